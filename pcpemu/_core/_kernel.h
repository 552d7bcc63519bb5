/*
 * C mirrors of the kernel structures pcpemu runs on: struct list_head,
 * struct page, struct free_area, struct zone, struct per_cpu_pages
 * (include/linux/mm_types.h, include/linux/mmzone.h, v6.10, x86_64), and the
 * emulator's own per-node and per-CPU state around them.
 *
 * Field order follows the kernel; the asserts at the end pin sizes and offsets
 * so that gcc and pahole see exactly what the emulator runs.
 */
#ifndef PCPEMU_KERNEL_H
#define PCPEMU_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_SHIFT		12
#define MAX_PAGE_ORDER		10
#define NR_PAGE_ORDERS		(MAX_PAGE_ORDER + 1)
#define PAGEBLOCK_ORDER		9
#define PAGEBLOCK_NR_PAGES	(1UL << PAGEBLOCK_ORDER)
#define PAGE_ALLOC_COSTLY_ORDER	3
#define SMP_CACHE_BYTES		64
#define MAX_PCP_LISTS		64	/* bound of the pindex tables, not of the kernel */

enum migratetype {
	MIGRATE_UNMOVABLE,
	MIGRATE_MOVABLE,
	MIGRATE_RECLAIMABLE,
	MIGRATE_PCPTYPES,
	MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES,
	MIGRATE_CMA,
	MIGRATE_ISOLATE,
	MIGRATE_TYPES
};

enum zone_stat_item { NR_FREE_PAGES, NR_FREE_CMA_PAGES, NR_VM_ZONE_STAT_ITEMS };

/* enum zone_type (include/linux/mmzone.h) on x86_64: no HighMem */
enum zone_type {
	ZONE_DMA,
	ZONE_DMA32,
	ZONE_NORMAL,
	ZONE_MOVABLE,
	ZONE_DEVICE,
	MAX_NR_ZONES
};

/* enum zone_watermarks: the indices of zone->_watermark[] */
enum zone_watermarks {
	WMARK_MIN,
	WMARK_LOW,
	WMARK_HIGH,
	WMARK_PROMO,
	NR_WMARK
};

/* zone->flags bits (enum zone_flags) */
#define ZONE_BOOSTED_WATERMARK	(1UL << 0)
#define ZONE_RECLAIM_ACTIVE	(1UL << 1)
#define ZONE_BELOW_HIGH		(1UL << 2)

/* pcp->flags bits */
#define PCPF_PREV_FREE_HIGH_ORDER	(1 << 0)
#define PCPF_FREE_HIGH_BATCH		(1 << 1)

/* Rules of kernels after v6.10 that a machine follows (pglist_data.rules;
 * pcpemu.kernel.config.RULE_CHANGES) */
#define RULE_FREE_HIGHATOMIC	(1 << 0)	/* v6.12 c928807f6f6b */
#define RULE_CLAIM_STEAL	(1 << 1)	/* v6.15 c2f6ea38fc, 90abee6d7895 */
#define RULE_FREE_HIGH_MIN	(1 << 2)	/* v6.16 c544a952ba61 */
#define RULE_HIGHATOMIC_NON_BLOCK	(1 << 3)	/* v6.12 281dd25c1a01 */
#define RULE_DECAY_BATCHED	(1 << 4)	/* v6.19 fc4b909c368f; 6.18.7 */
#define RULE_FREE_BATCHED	(1 << 5)	/* v6.19 91e691296646 */

struct list_head {
	struct list_head *next, *prev;
};

/*
 * page->flags. Unlike the kernel, pcpemu keeps explicit bits for a block on a
 * pcp list and for an allocated block head, so check() and page_info() can
 * tell every state apart without walking lists. A page with no bit set is a
 * tail page of a block, or a hole. Zones start on MAX_ORDER_NR_PAGES
 * boundaries, so buddies never cross zones and page_zone() is a table lookup
 * per MAX_ORDER block (block_zone).
 */
#define PG_buddy	(1UL << 0)	/* head of a free block in the buddy */
#define PG_pcp		(1UL << 1)	/* head of a block on a pcp list */
#define PG_allocated	(1UL << 2)	/* head of an allocated block */
#define PG_head		(1UL << 3)	/* compound head (__GFP_COMP, order > 0) */
#define PG_lru		(1UL << 4)	/* movable user page: counted by steal scans */
#define PG_pcpb_merge	(1UL << 5)	/* pcp_buddy: on a drain's merge list (zone->lock held) */

struct page {
	unsigned long flags;
	struct list_head lru;		/* buddy_list / pcp_list */
	unsigned long private;		/* buddy order while PG_buddy */
	int _refcount;
	int _pincount;
	uint64_t owner;			/* token of whoever holds the block */
	int16_t cpu;			/* pcp CPU while PG_pcp */
	uint8_t pindex;			/* pcp list while PG_pcp */
	uint8_t order;			/* allocation order while PG_allocated */
	uint8_t mt;			/* PG_buddy: the free list it is on; PG_pcp and
					 * allocated: v6.9's pcppage migratetype
					 * (page->index), set at free and by
					 * __rmqueue_smallest */
	uint8_t _pad[3];
	uint64_t _reserved;
};

struct free_area {
	struct list_head free_list[MIGRATE_TYPES];
	unsigned long nr_free;
};

/* spinlock_t without lock debugging: one 32-bit word */
typedef struct { volatile int locked; } spinlock_t;

struct per_cpu_pages {
	spinlock_t lock;	/* protects lists and the counters */
	int count;		/* pages on all lists */
	int high;		/* auto-tuned between high_min and high_max */
	int high_min;
	int high_max;
	int batch;		/* chunk size for refill and drain */
	uint8_t flags;		/* PCPF_* */
	uint8_t alloc_factor;	/* batch scaling of refills */
	uint8_t expire;		/* CONFIG_NUMA */
	short free_count;	/* consecutive frees, in pages */
	struct list_head lists[];	/* NR_PCP_LISTS, chosen at boot */
};

struct cacheline_padding {
	char x[0];
} __attribute__((aligned(SMP_CACHE_BYTES)));

struct zone {
	unsigned long _watermark[NR_WMARK];
	unsigned long watermark_boost;
	unsigned long nr_reserved_highatomic;
	unsigned long nr_free_highatomic;	/* v6.12 (c928807f6f6b) */
	long lowmem_reserve[MAX_NR_ZONES];
	struct per_cpu_pages **per_cpu_pageset;	/* [cpu] */
	int pageset_high_min;
	int pageset_high_max;
	int pageset_batch;
	int idx;			/* zone_idx() */
	unsigned long zone_start_pfn;
	unsigned long managed_pages;
	unsigned long spanned_pages;
	unsigned long present_pages;
	unsigned long cma_pages;
	int nr_isolate_pageblock;
	/* emulator: the pfns freed to the buddy at boot (ZoneSpan.free_start/free_end),
	 * and pglist_data.rules for the helpers that see only the zone */
	unsigned long managed_start, managed_end;
	int rules;
	struct cacheline_padding _pad1_;
	/* Write-intensive fields used from the page allocator */
	struct free_area free_area[NR_PAGE_ORDERS];
	unsigned long flags;
	spinlock_t lock;
	struct cacheline_padding _pad2_;
	long vm_stat[NR_VM_ZONE_STAT_ITEMS];
} __attribute__((aligned(SMP_CACHE_BYTES)));

/* ---- emulator state around the mirrors ---- */

/*
 * Counters with one value per CPU; each is bumped at one site. PGALLOC,
 * PGFREE, ALLOC_CALLS and FREE_CALLS are sums of cpu_state.alloc,
 * alloc_fail and free, made by stats().
 */
enum pcpemu_item {
	ALLOC_FAILED,
	ZONE_LOCK,		/* zone->lock acquisitions */
	ZONE_LOCK_PAGES,	/* pages moved while holding zone->lock */
	PCP_REFILL,		/* rmqueue_bulk calls from __rmqueue_pcplist */
	PCP_REFILL_PAGES,
	PCP_DRAIN,		/* free_pcppages_bulk calls */
	PCP_DRAIN_PAGES,
	PCP_TRYLOCK_FAIL,
	PCP_HIGH_CHANGE,	/* pcp->high moved by auto-tuning */
	PGALLOC_FALLBACK,	/* __rmqueue_fallback successes (extfrag events) */
	PGSTEAL_BLOCK,		/* fallbacks that claimed the whole pageblock */
	PAGEBLOCK_CHANGE,	/* pageblock migratetype changes */
	CMA_TO_NONMOVABLE,	/* CMA blocks handed to non-movable requests */
	ZONE_BELOW_HIGH_SET,
	WMARK_BOOST,
	SLOWPATH,		/* allocations that needed the slow path */
	SLOWPATH_DRAIN,		/* drain_all_pages from the slow path */
	DRAIN_ALL,		/* drain_all_pages calls */
	PCP_DECAY,		/* decay_pcp_high calls */
	ZONE_FALLBACK,		/* allocations served below the preferred zone */
	FREE_SKIPPED,		/* op-stream frees of slots whose alloc failed */
	ZONE_LOCK_CONTENDED,	/* threaded mode: acquisitions that found zone->lock held */
	ZONE_LOCK_SPINS,	/* threaded mode: spin iterations waiting for zone->lock */
	PCPB_ROUTED_FREE,	/* pcp_buddy: frees routed to the owning CPU's pcp */
	PCPB_PHASE0_PAGES,	/* pcp_buddy refill: owned fragments recovered from the buddy */
	PCPB_PHASE1_BLOCKS,	/* pcp_buddy refill: whole pageblocks claimed */
	PCPB_PHASE2_PAGES,	/* pcp_buddy refill: sub-pageblock chunks, not owned */
	PCPB_PHASE3_PAGES,	/* pcp_buddy refill: classic __rmqueue */
	PCPB_MERGES,		/* pcp_buddy: buddy merges on the pcp at drain */
	PCPB_DRAIN_CHUNKS,	/* pcp_buddy: owned chunks a drain freed to the buddy */
	PCPB_OWNED_SCANNED,	/* pcp_buddy: owned_blocks entries phase 0 looked at */
	PCPB_OWNED_SKIPPED,	/* ... of another migratetype: what per-type lists would not scan */
	PCPB_RELEASED,		/* pcp_buddy: owned blocks given up, wholly free again */
	NR_PCPEMU_ITEMS
};

/* Call sites that take zone->lock. */
enum lock_site {
	LOCK_RMQUEUE_BULK,
	LOCK_FREE_PCPPAGES_BULK,
	LOCK_FREE_ONE_PAGE,
	LOCK_RMQUEUE_BUDDY,
	LOCK_ISOLATION,
	LOCK_HIGHATOMIC,
	NR_LOCK_SITES
};

/* Fast-path operations whose pcp cachelines are recorded. */
enum pcp_op { PCP_OP_ALLOC, PCP_OP_FREE, PCP_OP_DRAIN, NR_PCP_OPS };
#define CL_HIST 65	/* 0..64 cachelines: one bucket per possible count of a 64-bit mask */

struct cpu_state {
	uint64_t touched;	/* pcp cachelines touched by the current operation */
	uint64_t item[NR_PCPEMU_ITEMS];
	uint64_t alloc[NR_PAGE_ORDERS][MIGRATE_TYPES];
	uint64_t alloc_fail[NR_PAGE_ORDERS][MIGRATE_TYPES];
	uint64_t free[NR_PAGE_ORDERS];			/* blocks freed, by order */
	uint64_t pcp_hit[NR_PAGE_ORDERS];
	uint64_t pcp_miss[NR_PAGE_ORDERS];
	uint64_t pcp_refill_blocks[NR_PAGE_ORDERS];	/* blocks rmqueue_bulk put on pcp lists */
	uint64_t cma_pages_to[MIGRATE_TYPES];	/* CMA pages by requesting migratetype */
	uint64_t lock_site[NR_LOCK_SITES];
	uint64_t lock_site_pages[NR_LOCK_SITES];
	uint64_t cl_hist[NR_PCP_OPS][CL_HIST];
	uint64_t owner_seq;	/* threaded mode: this CPU's owner tokens */
	/* replay: pages pcp_reveal_one put on a list out of a bigger list's
	 * block, not yet paid back with a whole block of it, per zone */
	uint64_t reveal_debt[MAX_NR_ZONES];
	/* replay: the free_count from which a free of order 1..3 drains this CPU's
	 * pcp of a zone at once (free_high), where the traced kernel showed it;
	 * 0: the rule's (free_high_min_count) */
	int free_high_at[MAX_NR_ZONES];
} __attribute__((aligned(SMP_CACHE_BYTES)));

/* kmem tracepoints (include/trace/events/kmem.h), as pcpemu.ftrace numbers them */
enum pcpemu_event_kind {
	MM_PAGE_ALLOC = 1,
	MM_PAGE_FREE,
	MM_PAGE_FREE_BATCHED,
	MM_PAGE_PCPU_DRAIN,
	MM_PAGE_ALLOC_ZONE_LOCKED,
	MM_PAGE_ALLOC_EXTFRAG,
};

/* One tracepoint hit; fields an event does not have are -1 (gfp: 0). */
struct pcpemu_event {
	int64_t op;		/* index of the stream op it happened in, -1 outside a stream */
	int64_t pfn;		/* -1: a failed mm_page_alloc */
	uint32_t gfp;
	uint16_t cpu;
	uint8_t kind;		/* enum pcpemu_event_kind */
	int8_t order;		/* extfrag: alloc_order */
	int8_t migratetype;	/* extfrag: alloc_migratetype */
	int8_t fallback_order;
	int8_t fallback_migratetype;
	int8_t percpu_refill;
	int8_t change_ownership;	/* extfrag: the block is now the request's type */
};

/* The events of a trace session (pcpemu.Machine.tracing), in the order they fired. */
struct pcpemu_trace {
	struct pcpemu_event *ev;
	size_t len, cap;
	int64_t op;		/* the stream op running now, -1 between streams */
	int lost;		/* the buffer could not grow: events were dropped */
};

/* Op codes of an op stream (struct pcpemu_op, Machine.run). */
enum pcpemu_opcode {
	OP_ALLOC,
	OP_FREE,
	OP_DRAIN,
	OP_DRAIN_ALL,
	OP_DECAY,
	OP_ALLOC_BULK,	/* one order-0 page as alloc_pages_bulk takes it (no mm_page_alloc) */
	OP_PCP_REVEAL,	/* a replay's, no kernel path: a starting pcp page moved to the
			 * list the trace shows it on (gfp: PCP_REVEAL_* fields) */
	NR_OPS
};

/* OP_PCP_REVEAL's gfp: the zone, the list it takes from (migratetype, order) and
 * the migratetype of the list (of op.order) it puts on; ALL: every page, not one
 * block. */
#define PCP_REVEAL_ZONE(gfp)	((gfp) & 0xf)
#define PCP_REVEAL_FROM(gfp)	(((gfp) >> 4) & 0xf)
#define PCP_REVEAL_TO(gfp)	(((gfp) >> 8) & 0xf)
#define PCP_REVEAL_FROM_ORDER(gfp)	(((gfp) >> 12) & 0xf)
#define PCP_REVEAL_ALL		(1u << 16)

/* A replay's, in an OP_ALLOC's gfp above its gfp bits: the zone the traced kernel
 * took the block from, plus 1 (0: none). The zonelist walk starts at that zone, as
 * the kernel's went on to it when the zones before failed their watermarks. */
#define OP_GFP_ZONE_SHIFT	28
#define OP_GFP_ZONE_MASK	(0x7u << OP_GFP_ZONE_SHIFT)
#define OP_GFP_ZONE(gfp)	(((gfp) & OP_GFP_ZONE_MASK) >> OP_GFP_ZONE_SHIFT)

/* A replay's, in an OP_FREE's gfp: the traced kernel's free found this CPU's pcp
 * locked (an interrupt's free while the task held pcp->lock: free_frozen_pages'
 * trylock failed) and went straight to the buddy (free_one_page). */
#define OP_FREE_PCP_LOCKED	(1u << 0)

/*
 * Why the core refused a request. Every check of an argument's meaning
 * returns one of these; the binding's one table turns a code into its
 * exception (pcpemu._core: raise_error).
 */
enum pcpemu_error {
	PE_OK,
	PE_BAD_PFN,		/* pfn outside the node */
	PE_BAD_RANGE,		/* [start, end) empty or outside the node */
	PE_BAD_ORDER,		/* order outside 0..MAX_PAGE_ORDER */
	PE_BAD_CPU,		/* cpu outside 0..nr_cpus-1 */
	PE_BAD_OWNER,		/* owner token outside 1..2^64-1 */
	PE_BAD_ZONE,		/* a zone that is not populated */
	PE_BAD_MIGRATETYPE,	/* migratetype outside 0..MIGRATE_TYPES-1 */
	PE_BAD_PINDEX,		/* pcp list outside 0..nr_pcp_lists-1 */
	PE_BAD_GFP,		/* gfp bits pcpemu does not model, or __GFP_MOVABLE with __GFP_RECLAIMABLE */
	PE_DOUBLE_FREE,		/* free of a free block */
	PE_NOT_ALLOCATED,	/* free of a pfn no allocation holds */
	PE_TAIL_PAGE,		/* free of a pfn inside an allocated block */
	PE_WRONG_ORDER,		/* free with another order than the allocation's */
	PE_PINNED,		/* free of a pinned block */
	PE_BAD_OP,		/* op stream: unknown op code */
	PE_BAD_SLOT,		/* op stream: slot outside the slot table */
	PE_SLOT_BUSY,		/* op stream: alloc into a slot that holds a block */
	PE_SLOT_EMPTY,		/* op stream: free of a slot that holds none */
	PE_FREE_ORDER,		/* op stream: free order differs from the slot's */
	PE_BAD_STREAM,		/* op stream: not an OP_DTYPE array, or results too short */
	PE_TRACE_ON,		/* a trace session is already on */
	PE_TRACE_OFF,		/* no trace session is on */
	PE_TRACE_THREADED,	/* a trace started while real threads run */
	PE_THREADS_TRACED,	/* real threads started while a trace is on */
	PE_TOO_MANY_LISTS,	/* more pcp lists than MAX_PCP_LISTS */
	PE_BAD_COSTS,		/* smp cost vector of the wrong length */
	PE_NOMEM,		/* the host is out of memory */
	NR_PCPEMU_ERRORS
};

/*
 * pcpemu's model of the pcp buddy RFC (Johannes Weiner, linux-mm, April 2026):
 * the pcp policy "pcp_buddy". NULL pglist_data.pcpb: the classic pcp.
 */
struct pcp_buddy {
	int16_t *tag;		/* [pfn] owning CPU of a PagePCPBuddy block head, -1: not owned */
	int16_t *block_owner;	/* [pageblock] CPU that claimed it, -1: none */
	int32_t *block_next;	/* [pageblock] owned_blocks links: -1 end, -2 not listed */
	int32_t *block_prev;
	int32_t *owned_head;	/* [zone * nr_cpus + cpu] first block of pcp->owned_blocks, -1 empty */
	struct list_head pending[NR_PAGE_ORDERS];	/* a drain's owned blocks being merged */
	int last_route;		/* owner CPU of the last routed free (the virtual-time scheduler reads it) */
};

/* What reclaim achieves (KernelConfig.reclaim). */
enum reclaim_outcome {
	RECLAIM_NONE,		/* nothing: the slow path loops, then unreserves highatomic */
	RECLAIM_PROGRESS,	/* progress: a failed retry drains every pcp and retries once */
	RECLAIM_TRACED,		/* the traced kernel's: the slow path drains nothing of its own */
};

struct pglist_data {
	struct zone *node_zones;	/* [MAX_NR_ZONES] */
	struct page *mem_map;
	unsigned long node_spanned_pages;
	uint8_t *pageblock_mt;		/* one migratetype per pageblock */
	uint8_t *block_zone;		/* zone of each MAX_ORDER block, 0xff: none */
	struct cpu_state *cpu;		/* [nr_cpus] */
	int nr_cpus;
	int nr_pcp_lists;
	int cacheline_shift;
	int pcp_batch_scale_max;
	long watermark_boost_factor;
	int pcp_cma;			/* MIGRATE_CMA is a pcp type (Android) */
	int rules;			/* RULE_* */
	int freelist_hygiene;		/* buddy rules of v6.10-rc1's freelist migratetype
					 * hygiene series; 0: the rules before it (v6.9) */
	int reclaim;			/* enum reclaim_outcome: what direct reclaim and
					 * kswapd achieve */
	int kswapd_failures;		/* kswapd runs that reclaimed nothing */
	int8_t pindex[NR_PAGE_ORDERS][MIGRATE_TYPES];	/* order_to_pindex, -1: no pcp */
	uint8_t pindex_order[MAX_PCP_LISTS];		/* pindex_to_order */
	uint64_t next_owner;
	int threaded;			/* real threads run the op streams: atomic locks */
	uint64_t untraced_owner;	/* owner of the pages a seeded zone starts with, 0: none */
	unsigned long untraced_cursor[MAX_NR_ZONES];	/* where OP_PCP_REVEAL looks for its blocks */
	unsigned long untraced_mt_cursor[MAX_NR_ZONES][MIGRATE_PCPTYPES];	/* ... for blocks of a type */
	/* node_zonelists[ZONELIST_FALLBACK] by highest_zoneidx: the populated
	 * zones from it down, NULL-terminated */
	struct zone *zonelists[MAX_NR_ZONES][MAX_NR_ZONES + 1];
	struct pcpemu_trace *trace;	/* NULL: tracepoints off */
	struct pcp_buddy *pcpb;		/* NULL: the classic pcp */
};

/*
 * What __alloc_pages derives from a gfp mask before it looks at any zone
 * (struct alloc_context and the alloc_flags of prepare_alloc_pages, mm/internal.h).
 * Nothing in it changes after boot, so an op stream prepares it once per gfp.
 */
struct alloc_context {
	struct zone **zonelist;		/* pglist_data.zonelists[highest_zoneidx] */
	struct zone *preferred_zone;	/* first zone of the zonelist, NULL if none */
	int highest_zoneidx;
	int migratetype;
	int alloc_flags;		/* the fast path's: low watermark, CMA, kswapd, nofragment */
	unsigned int gfp;
	unsigned int op_gfp;		/* an op stream's: gfp with its OP_GFP_ZONE */
};

/* The lines a pcp fast-path operation touched: bits set in cpu_state.touched. */
static inline int pcpemu_popcount(uint64_t x)
{
	return __builtin_popcountll(x);	/* one instruction with -mpopcnt (setup.py) */
}

/*
 * Real spinlocks for threaded mode (pglist_data.threaded): test-and-set with
 * a read-only spin, as a pre-qspinlock kernel spins. pcpemu_spin_lock returns
 * how many times it spun, 0 when the lock was free.
 */
static inline void pcpemu_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static inline unsigned long pcpemu_spin_lock(volatile int *lock)
{
	unsigned long spins = 0;

	while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE)) {
		do {
			spins++;
			pcpemu_cpu_relax();
		} while (__atomic_load_n(lock, __ATOMIC_RELAXED));
	}
	return spins;
}

static inline int pcpemu_spin_trylock(volatile int *lock)
{
	return !__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE);
}

static inline void pcpemu_spin_unlock(volatile int *lock)
{
	__atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/*
 * lockdep_assert_held(&zone->lock) of the functions the kernel runs under
 * zone->lock: checked in PCPEMU_DEBUG builds, free otherwise.
 */
#ifdef PCPEMU_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define PCPEMU_DEBUG_BUILD 1
static inline void pcpemu_assert_locked(const volatile int *lock, const char *fn)
{
	if (!__atomic_load_n(lock, __ATOMIC_RELAXED)) {
		fprintf(stderr, "pcpemu: BUG: %s() runs without zone->lock held\n", fn);
		abort();
	}
}
#else
#define PCPEMU_DEBUG_BUILD 0
static inline void pcpemu_assert_locked(const volatile int *lock, const char *fn)
{
	(void)lock;
	(void)fn;
}
#endif

_Static_assert(sizeof(struct page) == 64, "struct page mirror must be 64 bytes");
_Static_assert(offsetof(struct page, lru) == 8, "page->lru at 8 as in the kernel");
_Static_assert(sizeof(spinlock_t) == 4, "spinlock_t is one word without lock debugging");
_Static_assert(offsetof(struct per_cpu_pages, free_count) == 28, "pcp->free_count at 28 (NUMA)");
_Static_assert(offsetof(struct per_cpu_pages, lists) == 32, "pcp->lists at 32 (x86_64)");
_Static_assert(offsetof(struct per_cpu_pages, lists) <= SMP_CACHE_BYTES,
	       "the pcp header lies on its first cacheline: one touch records it");
_Static_assert(offsetof(struct zone, free_area) % SMP_CACHE_BYTES == 0, "free_area starts a cacheline");
_Static_assert(offsetof(struct zone, vm_stat) % SMP_CACHE_BYTES == 0, "vm_stat starts a cacheline");

#endif /* PCPEMU_KERNEL_H */
