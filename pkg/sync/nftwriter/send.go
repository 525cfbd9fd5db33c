package nftwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	gnft "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// google/nftables marshals rulegen's tables, chains, rules and sets into
// netlink messages (set elements are rulegen's own: elements.go); rulegen
// sends them all itself, for two reasons:
//
//   - The library asks the kernel to acknowledge every message and reads
//     the acknowledgements one system call pair at a time: for a full table
//     of 5,000 services that is 50,000 acknowledgements, about a quarter of
//     the whole write. rulegen asks for one, on the last message. The kernel
//     still reports every message it refuses, and as it processes a batch
//     while sendmsg runs, every reply is queued by the time the send returns.
//   - The library keeps every message of a batch, and the garbage of
//     building them, until the batch is sent: the peak memory of a full write
//     was several times the batch. rulegen takes the messages in chunks (the
//     batch code flushes the library every few thousand rules) and keeps
//     only their bytes.
//
// The library's messages are captured through its WithTestDial hook, its
// documented way to see exactly what it would send, and appended to the
// same buffer as rulegen's element messages. All of it goes to the kernel
// in one batch: one transaction, as before.

// sender collects the messages of one transaction and sends them.
type sender struct {
	netns int    // network namespace fd, 0 for the caller's
	buf   []byte // the batch begin, then the marshaled messages
	offs  []int  // where each message starts in buf (for the acknowledgement and error reports)
	// udata is the user data of sets by name, added to their NEWSET
	// message: google/nftables writes only a few kinds of its own (see
	// typeofUserData).
	udata map[string][]byte
}

// newSender returns a sender whose buffer has room for about size bytes of
// messages (so that it is not copied as it grows).
func newSender(netns, size int) *sender {
	s := &sender{netns: netns, buf: make([]byte, 0, size)}
	s.buf = append(s.buf, batchMessage(unix.NFNL_MSG_BATCH_BEGIN, 0)...)
	return s
}

// dial is the nltest.Func given to google/nftables. A flush of the library
// hands it a batch: its messages are kept (without their batch begin and
// end); the library then sees one acknowledgement per message it waits for.
func (s *sender) dial(reqs []netlink.Message) ([]netlink.Message, error) {
	if len(reqs) > 2 {
		for _, m := range reqs[1 : len(reqs)-1] {
			if err := s.addUserData(&m); err != nil {
				return nil, err
			}
			m.Header.Flags &^= netlink.Acknowledge
			m.Header.Sequence = uint32(len(s.offs) + 1) // the batch begin is 0
			m.Header.PID = 0                            // the kernel answers the socket's port, whatever this says
			b, err := m.MarshalBinary()
			if err != nil {
				return nil, err
			}
			s.offs = append(s.offs, len(s.buf))
			s.buf = append(s.buf, b...)
		}
	}
	return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
}

// addUserData appends the user data given for a set to its NEWSET message.
func (s *sender) addUserData(m *netlink.Message) error {
	if len(s.udata) == 0 || uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWSET || len(m.Data) < 4 {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_NAME {
			continue
		}
		u, ok := s.udata[ad.String()]
		if !ok {
			return nil
		}
		b, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_USERDATA, Data: u}})
		if err != nil {
			return err
		}
		m.Data = append(m.Data, b...)
		m.Header.Length += uint32(len(b))
		return nil
	}
	return ad.Err()
}

// conn returns a google/nftables connection whose flushes go to s.
func (s *sender) conn() (*gnft.Conn, error) {
	return gnft.New(gnft.WithTestDial(s.dial))
}

// replyTimeout bounds the wait for the kernel's answer (it is normally
// queued before sendmsg returns).
const replyTimeout = 30 * time.Second

// batchMessage returns a batch begin or end message (nfgenmsg: family 0,
// version 0, resource id NFNL_SUBSYS_NFTABLES in network order).
func batchMessage(typ uint16, seq uint32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+4)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.BigEndian.PutUint16(b[unix.SizeofNlMsghdr+2:], unix.NFNL_SUBSYS_NFTABLES)
	return b
}

// commit sends everything collected as one batch and waits for the
// kernel's answer: nil, or every refused message named with the reason.
func (s *sender) commit() error {
	if len(s.offs) == 0 {
		return nil
	}
	cfg := &netlink.Config{}
	if s.netns != 0 {
		cfg.NetNS = s.netns
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer c.Close()
	if err := raiseBuffers(c); err != nil {
		return err
	}
	// Errors carry the refused message's header, not the whole message.
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		return err
	}
	// Acknowledge the last message only (flags are at offset 6).
	last := s.offs[len(s.offs)-1]
	flags := binary.NativeEndian.Uint16(s.buf[last+6:])
	binary.NativeEndian.PutUint16(s.buf[last+6:], flags|unix.NLM_F_ACK)
	lastSeq := uint32(len(s.offs))
	msg := append(s.buf, batchMessage(unix.NFNL_MSG_BATCH_END, lastSeq+1)...)

	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("sending the batch (%d bytes): %w", len(msg), serr)
	}

	buf := make([]byte, 1<<16)
	var refused []error
	deadline := time.Now().Add(replyTimeout)
	for time.Now().Before(deadline) {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true
		}); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			if len(refused) > 0 {
				break // the kernel said no and has nothing more to say
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if rerr != nil {
			return fmt.Errorf("reading the kernel's answer: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("reading the kernel's answer: %w", err)
		}
		done := false
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			code := int32(binary.NativeEndian.Uint32(m.Data[:4]))
			seq := m.Header.Seq
			if len(m.Data) >= 4+unix.SizeofNlMsghdr {
				seq = binary.NativeEndian.Uint32(m.Data[4+8:]) // the refused message's own header
			}
			if code != 0 {
				what := "the batch"
				if seq >= 1 && int(seq) <= len(s.offs) {
					what = describe(msg[s.offs[seq-1]:])
				}
				refused = append(refused, fmt.Errorf("%s: %w", what, syscall.Errno(-code)))
			}
			if seq == lastSeq {
				done = true
			}
		}
		if done {
			break
		}
	}
	switch {
	case len(refused) > 0:
		return errors.Join(refused...)
	case time.Now().After(deadline):
		return fmt.Errorf("no answer from the kernel within %s", replyTimeout)
	}
	return nil
}

// describe says what the marshaled message at the start of b is about: its
// kind and the chain or set it names, which names the service.
func describe(b []byte) string {
	var m netlink.Message
	if len(b) < unix.SizeofNlMsghdr {
		return "a message"
	}
	n := int(binary.NativeEndian.Uint32(b))
	if n > len(b) || m.UnmarshalBinary(b[:n]) != nil {
		return "a message"
	}
	kind := map[uint16]string{
		unix.NFT_MSG_NEWTABLE: "table", unix.NFT_MSG_DELTABLE: "table deletion",
		unix.NFT_MSG_NEWCHAIN: "chain", unix.NFT_MSG_DELCHAIN: "chain deletion",
		unix.NFT_MSG_NEWRULE: "rule", unix.NFT_MSG_NEWSET: "set", unix.NFT_MSG_DELSET: "set deletion",
		unix.NFT_MSG_NEWSETELEM: "set elements", unix.NFT_MSG_DELSETELEM: "set element deletion",
	}[uint16(m.Header.Type)&0xff]
	if kind == "" {
		kind = fmt.Sprintf("message type %d", m.Header.Type&0xff)
	}
	if len(m.Data) > 4 {
		if ad, err := netlink.NewAttributeDecoder(m.Data[4:]); err == nil {
			for ad.Next() {
				// NFTA_RULE_CHAIN, NFTA_CHAIN_NAME, NFTA_SET_NAME and
				// NFTA_SET_ELEM_LIST_SET are all attribute 2 (1 is the table).
				if ad.Type() == 2 {
					return fmt.Sprintf("%s %q", kind, ad.String())
				}
			}
		}
	}
	return kind
}

// raiseBuffers raises both socket buffers past their defaults (as nft does):
// a full update of a large cluster is tens of megabytes in one batch.
func raiseBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 1<<30); e != nil && serr == nil {
				serr = e
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("raising netlink socket buffers: %w", serr)
	}
	return nil
}
