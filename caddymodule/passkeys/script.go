package passkeys

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// Script is passkeys.js, the pages' one script: it runs the browser's side
// of the ceremonies (navigator.credentials) and posts the answers as JSON.
// The plugin serves it from {prefix}/passkeys.js, so that the pages load
// nothing from elsewhere.
//
//go:embed passkeys.js
var Script []byte

// ScriptETag names this build's Script, for revalidation.
var ScriptETag = func() string {
	sum := sha256.Sum256(Script)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()
