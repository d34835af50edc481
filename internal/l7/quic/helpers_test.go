package quic

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rfcDCID = []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}

// readHex reads a testdata file of hex digits, whitespace ignored.
func readHex(tb testing.TB, name string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return b
}

// clientHello builds a ClientHello handshake message (no record header)
// whose extensions are pad bytes of a padding extension, then server_name
// for name, then tail bytes of another padding-like extension: the name can
// be put anywhere in the message.
func clientHello(name string, pad, tail int) []byte {
	var exts []byte
	addExt := func(typ uint16, data []byte) {
		exts = binary.BigEndian.AppendUint16(exts, typ)
		exts = binary.BigEndian.AppendUint16(exts, uint16(len(data)))
		exts = append(exts, data...)
	}
	if pad > 0 {
		addExt(21, make([]byte, pad))
	}
	if name != "" {
		list := []byte{0}
		list = binary.BigEndian.AppendUint16(list, uint16(len(name)))
		list = append(list, name...)
		addExt(0, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
	}
	if tail > 0 {
		addExt(0xfe0d, bytes.Repeat([]byte{0xaa}, tail))
	}
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)
	body = append(body, 0, 2, 0x13, 0x01, 1, 0)
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// scatter cuts hello into pieces and spreads them, shuffled and mixed with
// PING and PADDING frames, over npkt Initial packets of version v, in
// shuffled order: what Chromium does with its first flight.
func scatter(tb testing.TB, r *rand.Rand, v uint32, hello []byte, npkt int) [][]byte {
	tb.Helper()
	type piece struct{ off, end int }
	var pieces []piece
	for off := 0; off < len(hello); {
		end := min(len(hello), off+1+r.IntN(400))
		pieces = append(pieces, piece{off, end})
		off = end
	}
	r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	frames := make([][]byte, npkt)
	for i, p := range pieces {
		k := i % npkt
		if r.IntN(3) == 0 {
			frames[k] = append(frames[k], framePing)
		}
		if r.IntN(3) == 0 {
			frames[k] = append(frames[k], 0, 0, 0)
		}
		frames[k] = AppendCrypto(frames[k], uint64(p.off), hello[p.off:p.end])
	}
	out := make([][]byte, npkt)
	for i := range frames {
		pkt, err := SealInitial(nil, v, rfcDCID, []byte{1, 2, 3, 4}, uint32(i), frames[i])
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pkt
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
