package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

const (
	// Version1 is QUIC version 1, RFC 9000.
	Version1 uint32 = 0x00000001
	// Version2 is QUIC version 2, RFC 9369.
	Version2 uint32 = 0x6b3343cf

	// maxConnIDLen is the longest connection ID versions 1 and 2 allow
	// (RFC 9000 section 17.2).
	maxConnIDLen = 20
	keyLen       = 16 // AEAD_AES_128_GCM, the Initial packets' cipher
	ivLen        = 12
	tagLen       = 16
	sampleLen    = 16 // header protection sample, RFC 9001 section 5.4.2
)

// versionInfo is what differs between versions for a client Initial.
type versionInfo struct {
	salt                       []byte
	keyLabel, ivLabel, hpLabel string
	// initialType is the long-header packet type of Initial packets: the
	// two type bits after the form and fixed bits.
	initialType byte
	// types maps the long-header type bits to what they mean, so that a
	// walk over coalesced packets knows which carry a Length field.
	types [4]longType
}

type longType uint8

const (
	typeInitial longType = iota
	type0RTT
	typeHandshake
	typeRetry
)

var (
	// RFC 9001 section 5.2.
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	// RFC 9369 section 3.3.1.
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// The parameters of each version: constants of the RFCs, never written.
var (
	version1 = versionInfo{
		salt: saltV1, keyLabel: "quic key", ivLabel: "quic iv", hpLabel: "quic hp",
		initialType: 0,
		types:       [4]longType{typeInitial, type0RTT, typeHandshake, typeRetry},
	}
	// RFC 9369 section 3.2 rotates the type bits.
	version2 = versionInfo{
		salt: saltV2, keyLabel: "quicv2 key", ivLabel: "quicv2 iv", hpLabel: "quicv2 hp",
		initialType: 1,
		types:       [4]longType{typeRetry, typeInitial, type0RTT, typeHandshake},
	}
)

// lookupVersion returns the parameters of version v, or nil for a version
// this package does not read. Callers must not modify them.
func lookupVersion(v uint32) *versionInfo {
	switch v {
	case Version1:
		return &version1
	case Version2:
		return &version2
	}
	return nil
}

// initialKeys protect a client's Initial packets for one connection ID.
type initialKeys struct {
	aead cipher.AEAD
	hp   cipher.Block
	iv   [ivLen]byte
}

// clientInitialKeys derives the client's Initial keys from the Destination
// Connection ID of its first Initial (RFC 9001 section 5.2, RFC 9369
// section 3.3).
func clientInitialKeys(v *versionInfo, dcid []byte) (initialKeys, error) {
	var k initialKeys
	initial, err := hkdf.Extract(sha256.New, dcid, v.salt)
	if err != nil {
		return k, fmt.Errorf("quic: initial secret: %w", err)
	}
	client, err := expandLabel(initial, "client in", sha256.Size)
	if err != nil {
		return k, err
	}
	key, err := expandLabel(client, v.keyLabel, keyLen)
	if err != nil {
		return k, err
	}
	iv, err := expandLabel(client, v.ivLabel, ivLen)
	if err != nil {
		return k, err
	}
	hp, err := expandLabel(client, v.hpLabel, keyLen)
	if err != nil {
		return k, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return k, fmt.Errorf("quic: packet key: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return k, fmt.Errorf("quic: packet key: %w", err)
	}
	if k.hp, err = aes.NewCipher(hp); err != nil {
		return k, fmt.Errorf("quic: header protection key: %w", err)
	}
	copy(k.iv[:], iv)
	return k, nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context
// (RFC 8446 section 7.1).
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	const prefix = "tls13 "
	info := make([]byte, 0, 2+1+len(prefix)+len(label)+1)
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), n)
	if err != nil {
		return nil, fmt.Errorf("quic: expand label %q: %w", label, err)
	}
	return out, nil
}
