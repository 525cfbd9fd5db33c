package nftwriter

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	gnft "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// google/nftables marshals rulegen's objects into netlink messages, asks the
// kernel to acknowledge every one of them and then reads the
// acknowledgements one system call pair at a time: for a full table of
// 5,000 services that is 55,000 acknowledgements, about a quarter of the
// whole write. rulegen sends the batch itself instead. The library's
// messages are captured through its WithTestDial hook (its documented way to
// see exactly what it would send) and sent over a netlink socket of
// rulegen's own, with an acknowledgement requested for the last message
// only. The kernel still reports every message it refuses, and since it
// processes a batch while sendmsg runs, all replies are queued by the time
// the send returns.

// sender sends one captured batch and records what the kernel answered.
type sender struct {
	netns int   // network namespace fd, 0 for the caller's
	err   error // the kernel's verdict on the batch
	sent  bool
}

// dial is the nltest.Func given to google/nftables: the batch goes to the
// kernel; the library then sees one "ack" per message it waits for (the
// real outcome is in s.err, read after Flush).
func (s *sender) dial(reqs []netlink.Message) ([]netlink.Message, error) {
	if reqs != nil {
		s.sent = true
		s.err = s.send(reqs)
	}
	return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
}

// conn returns a google/nftables connection that hands its batch to s.
func (s *sender) conn() (*gnft.Conn, error) {
	return gnft.New(gnft.WithTestDial(s.dial))
}

// replyTimeout bounds the wait for the kernel's answer (it is normally
// queued before sendmsg returns).
const replyTimeout = 30 * time.Second

func (s *sender) send(reqs []netlink.Message) error {
	if len(reqs) < 3 {
		return nil // an empty batch: begin and end only
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
	last := len(reqs) - 2 // the last message before the batch end
	for i := range reqs {
		reqs[i].Header.Flags &^= netlink.Acknowledge
	}
	reqs[last].Header.Flags |= netlink.Acknowledge
	sent, err := c.SendMessages(reqs)
	if err != nil {
		return fmt.Errorf("sending the batch: %w", err)
	}
	first, lastSeq := sent[0].Header.Sequence, sent[last].Header.Sequence

	raw, err := c.SyscallConn()
	if err != nil {
		return err
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
			code := int32(nativeUint32(m.Data[:4]))
			seq := m.Header.Seq
			if len(m.Data) >= 4+unix.SizeofNlMsghdr {
				seq = nativeUint32(m.Data[4+8 : 4+12]) // the refused message's own header
			}
			if code != 0 {
				refused = append(refused, fmt.Errorf("%s: %w", describe(reqs, seq-first), syscall.Errno(-code)))
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

func nativeUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// describe names the message at index i of the batch: its kind and the
// chain or set it is about, which names the service.
func describe(reqs []netlink.Message, i uint32) string {
	if int(i) >= len(reqs) {
		return fmt.Sprintf("message %d", i)
	}
	m := reqs[i]
	kind := map[uint16]string{
		unix.NFT_MSG_NEWTABLE: "table", unix.NFT_MSG_DELTABLE: "table deletion",
		unix.NFT_MSG_NEWCHAIN: "chain", unix.NFT_MSG_DELCHAIN: "chain deletion",
		unix.NFT_MSG_NEWRULE: "rule", unix.NFT_MSG_NEWSET: "set", unix.NFT_MSG_DELSET: "set deletion",
		unix.NFT_MSG_NEWSETELEM: "set elements", unix.NFT_MSG_DELSETELEM: "set element deletion",
	}[uint16(m.Header.Type)&0xff]
	if kind == "" {
		kind = fmt.Sprintf("message type %d", m.Header.Type&0xff)
	}
	// The object's chain or set name: the attribute after the table name.
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
