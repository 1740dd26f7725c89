//go:build !unix

package argon2

func mapBlocks(n uint32) (blocks []block, mapped bool) { return make([]block, n), false }

func unmapBlocks([]block) {}
