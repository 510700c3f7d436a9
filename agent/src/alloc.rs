//! The agent's allocator is mimalloc (the `#[global_allocator]` in main.rs): a big run
//! allocates and frees tens of MB in its post-processing (graph, changes, report), and glibc
//! handed them back to the kernel and page-faulted them in again (issue 19: a third of the
//! post-processing of a 20,000-file run). This module says when freed memory goes back.

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; the -sys crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// From here to the exit, memory freed stays a second before it goes back to the kernel: the
/// post-processing frees one big structure and builds the next in the same pages. Not while
/// tracing: the bench's 10-million-event trace peaked at 72 MiB with a second, 61 MiB with
/// `return_freed_memory`'s 10 ms.
///
/// And no transparent huge pages from here: mimalloc asks for them, and each first touch of a
/// 2 MiB region made the kernel clear all of it (clear_page_erms was 8-20% of a 20,000-file
/// run's post-processing by run, the most variable part of it). Not earlier: the flag is
/// inherited across fork and exec, and the pilot's command must get the host's default.
pub fn for_post_processing() {
    set_purge_delay_ms(1000);
    // Best effort: a kernel without the prctl only keeps the huge pages.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// At the start: freed memory goes back after 10 ms. mimalloc.h documents that as the default,
/// yet left unset the same trace peaked at 72 MiB: it is set, not assumed.
pub fn return_freed_memory() {
    set_purge_delay_ms(10);
}

fn set_purge_delay_ms(ms: i64) {
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) };
}
