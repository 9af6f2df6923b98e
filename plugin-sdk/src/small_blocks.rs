//! A free list per size class for the plugin's small blocks.
//!
//! Nearly every allocation a call makes is small and short-lived: the event's
//! strings, a cloned payload, the answer's list, each freed before the call
//! returns. wasi-libc's dlmalloc spends tens of nanoseconds of bookkeeping on
//! each; here a small alloc or free is a pop or a push on its class's list.
//! Blocks are carved from chunks of the system allocator (4 KiB first, each
//! next one twice the last, up to 64 KiB: a fresh instance per call pays for
//! little more than it uses) and kept for reuse, so a plugin's small-block
//! memory is the peak of its live small blocks per class (the instance's
//! memory cap still bounds it: chunks come from the same linear memory).
//! Larger or over-aligned layouts go to the system allocator unchanged.
//!
//! Not thread-safe: a wasm32-wasip2 instance runs one thread.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr;

/// Block sizes 8, 16, ..., 512 bytes.
const CLASSES: usize = 7;
const MIN_SHIFT: u32 = 3;
const MAX_SMALL: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
const FIRST_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 64 << 10;
/// Chunks are aligned to this; a layout needing more goes to the system allocator.
const MAX_ALIGN: usize = 16;

pub(crate) struct SmallBlocks<A> {
    backing: A,
    /// Head of each class's list of free blocks; a free block holds the next one's address.
    free: [Cell<*mut u8>; CLASSES],
    /// The not yet carved rest of the current chunk.
    next: Cell<*mut u8>,
    end: Cell<*mut u8>,
    /// Size of the next chunk.
    chunk: Cell<usize>,
}

/// The class of a layout, `None` when the system allocator serves it.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align());
    if size > MAX_SMALL || layout.align() > MAX_ALIGN {
        return None;
    }
    // ceil(log2(size)), 0 for sizes 0 and 1.
    let bits = usize::BITS - size.saturating_sub(1).leading_zeros();
    Some(bits.saturating_sub(MIN_SHIFT) as usize)
}

const fn block_size(class: usize) -> usize {
    1 << (MIN_SHIFT as usize + class)
}

impl<A: GlobalAlloc> SmallBlocks<A> {
    pub(crate) const fn new(backing: A) -> Self {
        Self {
            backing,
            free: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            next: Cell::new(ptr::null_mut()),
            end: Cell::new(ptr::null_mut()),
            chunk: Cell::new(FIRST_CHUNK),
        }
    }

    /// A new block of `class` from the current chunk, or from a new chunk.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    unsafe fn carve(&self, class: usize) -> *mut u8 {
        let size = block_size(class);
        // Aligned to its size up to MAX_ALIGN, which covers any layout of its class.
        let align = size.min(MAX_ALIGN);
        let next = self.next.get();
        let offset = next.align_offset(align);
        let room = self.end.get().addr().saturating_sub(next.addr());
        let block = if !next.is_null() && offset.saturating_add(size) <= room {
            next.wrapping_add(offset)
        } else {
            let len = self.chunk.get();
            // SAFETY: a chunk size and MAX_ALIGN make a valid, non-zero layout.
            let layout = unsafe { Layout::from_size_align_unchecked(len, MAX_ALIGN) };
            let chunk = unsafe { self.backing.alloc(layout) };
            if chunk.is_null() {
                // Near the memory cap a chunk may not fit where one block still does.
                // SAFETY: a block size and its alignment make a valid, non-zero layout.
                let one = unsafe { Layout::from_size_align_unchecked(size, align) };
                return unsafe { self.backing.alloc(one) };
            }
            // The old chunk's rest (under one block) is left unused.
            self.end.set(chunk.wrapping_add(len));
            self.chunk.set((len * 2).min(MAX_CHUNK));
            chunk
        };
        self.next.set(block.wrapping_add(size));
        block
    }
}

// SAFETY: a block handed out is at least the layout's size (its class's block size is the
// size rounded up to a power of two) and aligned to the layout's alignment (see `carve`);
// it stays out of every free list until it is deallocated.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallBlocks<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            return unsafe { self.backing.alloc(layout) };
        };
        let head = self.free[class].get();
        if head.is_null() {
            return unsafe { self.carve(class) };
        }
        // SAFETY: a free block's first word holds the next free block of its class.
        self.free[class].set(unsafe { head.cast::<*mut u8>().read() });
        head
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            return unsafe { self.backing.alloc_zeroed(layout) };
        }
        // A reused block holds old data.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class(layout) {
            None => unsafe { self.backing.dealloc(ptr, layout) },
            Some(class) => {
                // SAFETY: every block holds at least one (aligned) pointer.
                unsafe { ptr.cast::<*mut u8>().write(self.free[class].get()) };
                self.free[class].set(ptr);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to `layout.align()`, fits an isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            (Some(old), Some(new)) if old == new => ptr,
            (None, None) => unsafe { self.backing.realloc(ptr, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let n = layout.size().min(new_size);
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, moved, n);
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_map_to_power_of_two_classes() {
        assert_eq!(class(layout(0, 1)), Some(0));
        assert_eq!(class(layout(1, 1)), Some(0));
        assert_eq!(class(layout(8, 8)), Some(0));
        assert_eq!(class(layout(9, 1)), Some(1));
        assert_eq!(class(layout(2, 16)), Some(1), "alignment counts as size");
        assert_eq!(class(layout(512, 8)), Some(6));
        assert_eq!(class(layout(513, 1)), None);
        assert_eq!(class(layout(8, 32)), None, "over-aligned");
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused_after_free() {
        let heap = SmallBlocks::new(System);
        let mut live: Vec<(usize, Layout)> = Vec::new();
        // Mixed sizes and alignments, interleaved frees, more than one chunk's worth.
        for i in 0..20_000usize {
            let l = layout(1 + (i * 37) % 700, 1 << (i % 5));
            let p = unsafe { heap.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p.addr() % l.align(), 0, "{l:?}");
            unsafe { p.write_bytes((i % 251) as u8, l.size()) };
            live.push((p.addr(), l));
            if i % 3 == 0 {
                let (q, l) = live.swap_remove(i % live.len());
                unsafe { heap.dealloc(q as *mut u8, l) };
            }
        }
        let mut spans: Vec<(usize, usize)> = live.iter().map(|&(p, l)| (p, p + l.size())).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "blocks overlap");
        for (p, l) in live {
            unsafe { heap.dealloc(p as *mut u8, l) };
        }
        // A freed block is the next one of its class.
        let l = layout(24, 8);
        let a = unsafe { heap.alloc(l) };
        unsafe { heap.dealloc(a, l) };
        assert_eq!(unsafe { heap.alloc(l) }, a);
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes() {
        let heap = SmallBlocks::new(System);
        let l = layout(5, 1);
        let p = unsafe { heap.alloc(l) };
        unsafe { p.copy_from(b"hello".as_ptr(), 5) };
        let same = unsafe { heap.realloc(p, l, 8) };
        assert_eq!(same, p, "same class: the block stays");
        let big = unsafe { heap.realloc(same, layout(8, 1), 4000) };
        let back = unsafe { heap.realloc(big, layout(4000, 1), 100) };
        let bytes = unsafe { std::slice::from_raw_parts(back, 5) };
        assert_eq!(bytes, b"hello");
        unsafe { heap.dealloc(back, layout(100, 1)) };
    }

    /// The system allocator with room for `left` more bytes.
    struct Capped {
        left: Cell<usize>,
    }

    unsafe impl GlobalAlloc for Capped {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.size() > self.left.get() {
                return ptr::null_mut();
            }
            self.left.set(self.left.get() - layout.size());
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn without_room_for_a_chunk_a_block_still_comes_then_null() {
        // Room for the first chunk and two more 64-byte blocks, not for a second chunk.
        let heap = SmallBlocks::new(Capped {
            left: Cell::new(FIRST_CHUNK + 128),
        });
        let l = layout(64, 8);
        let blocks: Vec<*mut u8> = (0..FIRST_CHUNK / 64 + 2)
            .map(|_| unsafe { heap.alloc(l) })
            .collect();
        assert!(
            blocks.iter().all(|p| !p.is_null()),
            "the chunk, then two blocks"
        );
        assert!(
            unsafe { heap.alloc(l) }.is_null(),
            "then nothing: the caller traps"
        );
        let mut spans: Vec<usize> = blocks.iter().map(|p| p.addr()).collect();
        spans.sort();
        assert!(
            spans.windows(2).all(|w| w[0] + 64 <= w[1]),
            "blocks overlap"
        );
        // A block that came alone is reused like any other.
        unsafe { heap.dealloc(blocks[blocks.len() - 1], l) };
        assert_eq!(unsafe { heap.alloc(l) }, blocks[blocks.len() - 1]);
    }

    #[test]
    fn zeroed_blocks_are_zero_when_reused() {
        let heap = SmallBlocks::new(System);
        let l = layout(64, 8);
        let p = unsafe { heap.alloc(l) };
        unsafe { p.write_bytes(0xAB, 64) };
        unsafe { heap.dealloc(p, l) };
        let z = unsafe { heap.alloc_zeroed(l) };
        assert_eq!(z, p);
        assert!(
            unsafe { std::slice::from_raw_parts(z, 64) }
                .iter()
                .all(|&b| b == 0)
        );
    }
}
