// Copyright 2017 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// Package argon2 is golang.org/x/crypto/argon2 (v0.57.0) changed in three
// ways for a server that hashes passwords on a few dedicated low-priority
// threads (package password).
//
// First, the working memory belongs to the caller and is reused from one
// call to the next, instead of being allocated afresh on every call. A hash
// at OWASP's floor needs 19 MiB. Allocated per call, as x/crypto does, a
// login flood of 60 hashes a second makes over a gigabyte of garbage a
// second: the garbage collector then runs all the time, taking CPU and
// adding pauses to every request of the process, and the heap's high-water
// mark grows far beyond the memory of the hashes actually under way.
//
// Second, the whole computation runs in the calling goroutine. x/crypto
// computes every segment in a goroutine of its own (lanes in parallel), so
// the work runs on whichever threads the Go scheduler picks, at their
// priority, beside the requests it was meant to yield to. A server computes
// one hash per core at once and gains nothing from lanes in parallel.
//
// Third, the computation calls the Memory's Pause hook every PauseEvery
// blocks, where the caller may hold it back while the server's requests
// need the CPU: the Go scheduler would only preempt it after 10 ms.
//
// In code: IDKey is a method of Memory; Key (argon2i) is left out;
// initBlocks takes its blocks from the Memory; deriveKey wipes them before
// returning; processBlocks runs the segments in turn and calls Pause;
// memory_*.go are new. Everything else, the assembly included, is x/crypto's code unchanged,
// which argon2_test.go checks against x/crypto itself and the reference
// implementation. To update, copy the files of a newer x/crypto and apply
// these changes again.
package argon2

import (
	"encoding/binary"

	"golang.org/x/crypto/blake2b"
)

// The Argon2 version implemented by this package.
const Version = 0x13

const (
	argon2d = iota
	argon2i
	argon2id
)

// Memory is working memory for IDKey, mapped outside the Go heap where the
// system allows. The zero value is ready to use; Release gives the memory
// back. A Memory is not safe for concurrent use: give each thread its own.
type Memory struct {
	// Pause, when set, is called by IDKey between blocks, about every
	// PauseEvery blocks (under a millisecond of work), in the goroutine
	// computing: it may block there to let other work have the CPU.
	Pause func()

	blocks []block // all zero between calls
	mapped bool    // blocks come from mapBlocks, not the heap
}

// PauseEvery is how many blocks IDKey computes between calls of Pause:
// about half a millisecond on a current core.
const PauseEvery = 1024

// Size returns how much memory m holds, in KiB.
func (m *Memory) Size() uint32 { return uint32(len(m.blocks)) }

// Release gives m's memory back to the system at once. m stays usable and
// holds nothing until its next IDKey.
func (m *Memory) Release() {
	if m.mapped {
		unmapBlocks(m.blocks)
	}
	m.blocks, m.mapped = nil, false
}

// IDKey derives a key from the password, salt, and cost parameters using
// Argon2id, exactly as golang.org/x/crypto/argon2.IDKey does, in m's memory.
// m grows to what the call needs (memory KiB, rounded as Argon2 requires)
// and keeps that size; its contents are wiped before IDKey returns, so no
// password-derived state outlives the call.
func (m *Memory) IDKey(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	return deriveKey(m, argon2id, password, salt, nil, nil, time, memory, threads, keyLen)
}

func deriveKey(m *Memory, mode int, password, salt, secret, data []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	if time < 1 {
		panic("argon2: number of rounds too small")
	}
	if threads < 1 {
		panic("argon2: parallelism degree too low")
	}
	h0 := initHash(password, salt, secret, data, time, memory, uint32(threads), keyLen, mode)

	memory = memory / (syncPoints * uint32(threads)) * (syncPoints * uint32(threads))
	if memory < 2*syncPoints*uint32(threads) {
		memory = 2 * syncPoints * uint32(threads)
	}
	B := initBlocks(m, &h0, memory, uint32(threads))
	// processBlocks XORs every new block into the old contents of its slot,
	// which x/crypto gets zeroed from make: the wipe also keeps that so.
	defer clear(B)
	processBlocks(B, time, memory, uint32(threads), mode, m.Pause)
	return extractKey(B, memory, uint32(threads), keyLen)
}

const (
	blockLength = 128
	syncPoints  = 4
)

type block [blockLength]uint64

func initHash(password, salt, key, data []byte, time, memory, threads, keyLen uint32, mode int) [blake2b.Size + 8]byte {
	var (
		h0     [blake2b.Size + 8]byte
		params [24]byte
		tmp    [4]byte
	)

	b2, _ := blake2b.New512(nil)
	binary.LittleEndian.PutUint32(params[0:4], threads)
	binary.LittleEndian.PutUint32(params[4:8], keyLen)
	binary.LittleEndian.PutUint32(params[8:12], memory)
	binary.LittleEndian.PutUint32(params[12:16], time)
	binary.LittleEndian.PutUint32(params[16:20], uint32(Version))
	binary.LittleEndian.PutUint32(params[20:24], uint32(mode))
	b2.Write(params[:])
	binary.LittleEndian.PutUint32(tmp[:], uint32(len(password)))
	b2.Write(tmp[:])
	b2.Write(password)
	binary.LittleEndian.PutUint32(tmp[:], uint32(len(salt)))
	b2.Write(tmp[:])
	b2.Write(salt)
	binary.LittleEndian.PutUint32(tmp[:], uint32(len(key)))
	b2.Write(tmp[:])
	b2.Write(key)
	binary.LittleEndian.PutUint32(tmp[:], uint32(len(data)))
	b2.Write(tmp[:])
	b2.Write(data)
	b2.Sum(h0[:0])
	return h0
}

func initBlocks(m *Memory, h0 *[blake2b.Size + 8]byte, memory, threads uint32) []block {
	var block0 [1024]byte
	if uint32(len(m.blocks)) < memory {
		m.Release()
		m.blocks, m.mapped = mapBlocks(memory)
	}
	B := m.blocks[:memory]
	for lane := uint32(0); lane < threads; lane++ {
		j := lane * (memory / threads)
		binary.LittleEndian.PutUint32(h0[blake2b.Size+4:], lane)

		binary.LittleEndian.PutUint32(h0[blake2b.Size:], 0)
		blake2bHash(block0[:], h0[:])
		for i := range B[j+0] {
			B[j+0][i] = binary.LittleEndian.Uint64(block0[i*8:])
		}

		binary.LittleEndian.PutUint32(h0[blake2b.Size:], 1)
		blake2bHash(block0[:], h0[:])
		for i := range B[j+1] {
			B[j+1][i] = binary.LittleEndian.Uint64(block0[i*8:])
		}
	}
	return B
}

func processBlocks(B []block, time, memory, threads uint32, mode int, pause func()) {
	lanes := memory / threads
	segments := lanes / syncPoints

	processSegment := func(n, slice, lane uint32) {
		var addresses, in, zero block
		if mode == argon2i || (mode == argon2id && n == 0 && slice < syncPoints/2) {
			in[0] = uint64(n)
			in[1] = uint64(lane)
			in[2] = uint64(slice)
			in[3] = uint64(memory)
			in[4] = uint64(time)
			in[5] = uint64(mode)
		}

		index := uint32(0)
		if n == 0 && slice == 0 {
			index = 2 // we have already generated the first two blocks
			if mode == argon2i || mode == argon2id {
				in[6]++
				processBlock(&addresses, &in, &zero)
				processBlock(&addresses, &addresses, &zero)
			}
		}

		offset := lane*lanes + slice*segments + index
		var random uint64
		for index < segments {
			prev := offset - 1
			if index == 0 && slice == 0 {
				prev += lanes // last block in lane
			}
			if mode == argon2i || (mode == argon2id && n == 0 && slice < syncPoints/2) {
				if index%blockLength == 0 {
					in[6]++
					processBlock(&addresses, &in, &zero)
					processBlock(&addresses, &addresses, &zero)
				}
				random = addresses[index%blockLength]
			} else {
				random = B[prev][0]
			}
			newOffset := indexAlpha(random, lanes, segments, threads, n, slice, lane, index)
			processBlockXOR(&B[offset], &B[prev], &B[newOffset])
			index, offset = index+1, offset+1
			if pause != nil && offset%PauseEvery == 0 {
				pause()
			}
		}
	}

	for n := uint32(0); n < time; n++ {
		for slice := uint32(0); slice < syncPoints; slice++ {
			// On the calling thread, lane after lane (see the package doc).
			// The lanes of one slice never read each other's blocks of
			// that slice, so their order does not change the result.
			for lane := uint32(0); lane < threads; lane++ {
				processSegment(n, slice, lane)
			}
		}
	}

}

func extractKey(B []block, memory, threads, keyLen uint32) []byte {
	lanes := memory / threads
	for lane := uint32(0); lane < threads-1; lane++ {
		for i, v := range B[(lane*lanes)+lanes-1] {
			B[memory-1][i] ^= v
		}
	}

	var block [1024]byte
	for i, v := range B[memory-1] {
		binary.LittleEndian.PutUint64(block[i*8:], v)
	}
	key := make([]byte, keyLen)
	blake2bHash(key, block[:])
	return key
}

func indexAlpha(rand uint64, lanes, segments, threads, n, slice, lane, index uint32) uint32 {
	refLane := uint32(rand>>32) % threads
	if n == 0 && slice == 0 {
		refLane = lane
	}
	m, s := 3*segments, ((slice+1)%syncPoints)*segments
	if lane == refLane {
		m += index
	}
	if n == 0 {
		m, s = slice*segments, 0
		if slice == 0 || lane == refLane {
			m += index
		}
	}
	if index == 0 || lane == refLane {
		m--
	}
	return phi(rand, uint64(m), uint64(s), refLane, lanes)
}

func phi(rand, m, s uint64, lane, lanes uint32) uint32 {
	p := rand & 0xFFFFFFFF
	p = (p * p) >> 32
	p = (p * m) >> 32
	return lane*lanes + uint32((s+m-(p+1))%uint64(lanes))
}
