// Package passkeystest is a software WebAuthn authenticator, with the
// browser around it, for tests: it answers the options a server sends for
// navigator.credentials.create and .get as a browser with a CTAP2 platform
// authenticator would (ES256 keys, "none" attestation, discoverable
// credentials), so that ceremonies can be run, and tampered with, without
// a browser.
package passkeystest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// Authenticator holds credentials and signs with them.
type Authenticator struct {
	// Origin is what the browser writes into clientDataJSON: the page's
	// origin. A test sets another to play a page on another site.
	Origin string
	// UserVerified is the UV flag of its answers (a PIN or a fingerprint
	// was checked). Default true.
	UserVerified bool
	// Credentials, in the order they were made.
	Credentials []*Credential
}

// Credential is one key pair the authenticator made.
type Credential struct {
	ID         []byte
	RPID       string
	UserHandle []byte
	Key        *ecdsa.PrivateKey
	// SignCount is the counter of its last signature; the next says one more.
	SignCount uint32
}

// New returns an authenticator in a browser showing a page of origin.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin, UserVerified: true}
}

// Response is an answer as the page's script posts it (see JSON).
type Response struct {
	ID                []byte
	ClientDataJSON    []byte
	AttestationObject []byte // create only
	AuthenticatorData []byte // get only
	Signature         []byte // get only
	UserHandle        []byte // get only
}

var b64 = base64.RawURLEncoding

// JSON is the answer as PublicKeyCredential.toJSON() spells it.
func (r *Response) JSON() []byte {
	resp := map[string]any{"clientDataJSON": b64.EncodeToString(r.ClientDataJSON)}
	if r.AttestationObject != nil {
		resp["attestationObject"] = b64.EncodeToString(r.AttestationObject)
		resp["transports"] = []string{"internal"}
	} else {
		resp["authenticatorData"] = b64.EncodeToString(r.AuthenticatorData)
		resp["signature"] = b64.EncodeToString(r.Signature)
		if r.UserHandle != nil {
			resp["userHandle"] = b64.EncodeToString(r.UserHandle)
		}
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(r.ID), "rawId": b64.EncodeToString(r.ID), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{}, "response": resp,
	})
	return out
}

// options are the parts of the server's options the authenticator reads.
type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		RPID string `json:"rpId"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Allow []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
	} `json:"publicKey"`
}

func parse(raw []byte) (options, error) {
	var o options
	if err := json.Unmarshal(raw, &o); err != nil {
		return o, fmt.Errorf("options: %w", err)
	}
	return o, nil
}

// Create makes a new credential for the options of
// navigator.credentials.create and answers with it.
func (a *Authenticator) Create(raw []byte) (*Response, error) {
	o, err := parse(raw)
	if err != nil {
		return nil, err
	}
	pk := o.PublicKey
	userHandle, err := b64.DecodeString(pk.User.ID)
	if err != nil || pk.RP.ID == "" {
		return nil, errors.New("options: no user id or rp id")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	c := &Credential{ID: id, RPID: pk.RP.ID, UserHandle: userHandle, Key: key}
	a.Credentials = append(a.Credentials, c)

	point, err := key.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, err
	}
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         1, // P-256
		XCoord:        point[1:33], YCoord: point[33:],
	})
	if err != nil {
		return nil, err
	}
	var attested bytes.Buffer
	attested.Write(make([]byte, 16)) // AAGUID: none
	_ = binary.Write(&attested, binary.BigEndian, uint16(len(id)))
	attested.Write(id)
	attested.Write(cose)
	authData := a.authData(c, 0x40, attested.Bytes()) // AT: attested credential data follows
	attestation, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		return nil, err
	}
	return &Response{ID: id, ClientDataJSON: a.clientData("webauthn.create", pk.Challenge), AttestationObject: attestation}, nil
}

// Get answers the options of navigator.credentials.get with the
// credential id (nil: the first one the options allow, or, for a
// discoverable sign-in, the first of the relying party), counting one
// more signature.
func (a *Authenticator) Get(raw []byte, id []byte) (*Response, error) {
	o, err := parse(raw)
	if err != nil {
		return nil, err
	}
	pk := o.PublicKey
	c := a.pick(pk.RPID, id, pk.Allow)
	if c == nil {
		return nil, errors.New("no credential for these options")
	}
	c.SignCount++
	authData := a.authData(c, 0, nil)
	clientData := a.clientData("webauthn.get", pk.Challenge)
	return &Response{ID: c.ID, ClientDataJSON: clientData, AuthenticatorData: authData,
		Signature: a.Sign(c, authData, clientData), UserHandle: c.UserHandle}, nil
}

// Sign signs authenticator data and client data with the credential's key,
// as an assertion does: for a test that builds its own.
func (a *Authenticator) Sign(c *Credential, authData, clientData []byte) []byte {
	hash := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte{}, authData...), hash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.Key, digest[:])
	if err != nil {
		panic(err)
	}
	return sig
}

func (a *Authenticator) pick(rpID string, id []byte, allow []struct {
	ID string `json:"id"`
}) *Credential {
	for _, c := range a.Credentials {
		if c.RPID != rpID || (id != nil && !bytes.Equal(c.ID, id)) {
			continue
		}
		if len(allow) == 0 {
			return c
		}
		for _, al := range allow {
			if al.ID == b64.EncodeToString(c.ID) {
				return c
			}
		}
	}
	return nil
}

// authData is rpIdHash || flags || signCount || rest; the flags always say
// the user was present, and verified when UserVerified.
func (a *Authenticator) authData(c *Credential, flags byte, rest []byte) []byte {
	rpHash := sha256.Sum256([]byte(c.RPID))
	flags |= 0x01 // UP
	if a.UserVerified {
		flags |= 0x04 // UV
	}
	out := append(rpHash[:], flags)
	out = binary.BigEndian.AppendUint32(out, c.SignCount)
	return append(out, rest...)
}

// ClientData is clientDataJSON as a browser writes it.
func ClientData(typ, challenge, origin string) []byte {
	out, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return out
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	return ClientData(typ, challenge, a.Origin)
}
