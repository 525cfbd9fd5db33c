package main

import (
	"encoding/binary"
	"fmt"
	"os"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func main() {
	f, _ := os.Open("/var/run/netns/" + os.Args[1])
	c, err := gnft.New(gnft.WithNetNSFd(int(f.Fd())))
	if err != nil {
		panic(err)
	}
	swap := os.Args[2] == "swap"
	t := c.AddTable(&gnft.Table{Name: "t", Family: gnft.TableFamilyIPv4})
	ch := c.AddChain(&gnft.Chain{Name: "svc", Table: t})
	set := &gnft.Set{Table: t, Anonymous: true, Constant: true, IsMap: true, KeyType: gnft.TypeInteger,
		DataType: gnft.MustConcatSetType(gnft.TypeIPAddr, gnft.TypeInetService), ID: 1, Name: "__map%d"}
	var els []gnft.SetElement
	for i, ip := range [][]byte{{10, 244, 1, 5}, {10, 244, 2, 7}} {
		k := make([]byte, 4)
		if swap {
			binary.BigEndian.PutUint32(k, uint32(i))
		} else {
			binary.NativeEndian.PutUint32(k, uint32(i))
		}
		v := append(append([]byte{}, ip...), 0x1f, 0x90, 0, 0)
		els = append(els, gnft.SetElement{Key: k, Val: v})
	}
	if err := c.AddSet(set, els); err != nil {
		panic(err)
	}
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		&expr.Numgen{Register: 1, Modulus: 2, Type: unix.NFT_NG_RANDOM},
	}
	if swap {
		ex = append(ex, &expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4})
	}
	ex = append(ex,
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, IsDestRegSet: true, DestRegister: 1},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true},
	)
	c.AddRule(&gnft.Rule{Table: t, Chain: ch, Exprs: ex})
	_ = binaryutil.BigEndian
	if err := c.Flush(); err != nil {
		panic(err)
	}
	fmt.Println("ok")
}
