//go:build unix

package argon2

import (
	"syscall"
	"unsafe"
)

// mapBlocks returns n zeroed blocks of anonymous memory mapped outside the
// Go heap, or, should the kernel refuse the mapping, n blocks of heap.
//
// Outside the heap, the garbage collector neither counts nor paces by them:
// memory held for good by the hashing threads would otherwise raise the
// heap goal by as much again (GOGC=100), so the process would carry that
// much more garbage between collections. And released memory goes back to
// the kernel at once rather than when the scavenger gets to it.
func mapBlocks(n uint32) (blocks []block, mapped bool) {
	b, err := syscall.Mmap(-1, 0, int(n)*blockLength*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]block, n), false
	}
	// Page-aligned, so aligned for uint64; block holds no pointers, so
	// the garbage collector has nothing to find in it.
	return unsafe.Slice((*block)(unsafe.Pointer(unsafe.SliceData(b))), n), true
}

// unmapBlocks gives back what mapBlocks mapped.
func unmapBlocks(blocks []block) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(blocks))), len(blocks)*blockLength*8)
	// The slice is the one Mmap returned (same start and length), which is
	// how syscall finds the mapping; it cannot fail for one it made.
	_ = syscall.Munmap(b)
}
