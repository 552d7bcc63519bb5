/*
 * An .xz file decompressed into a ring of blocks by one thread and read by another,
 * neither holding the GIL: liblzma writes straight into the ring, the parser copies
 * each block out (pcpemu._ftrace.XzRing). One producer, one consumer; each side naps
 * briefly when the ring is full or empty (no locks: the ring's counters are atomic).
 * The producer's liblzma decodes the blocks of a multi-block file (xz -T0, as
 * pcpemu capture writes) on a thread per CPU, so decompression is not held to the
 * one core `xz -dc` (5.4) uses while the parse and the replay want the others.
 *
 * Built without liblzma's headers (PCPEMU_HAVE_LZMA unset), xz_ring_new returns
 * NULL and pcpemu.kernel.ftrace decompresses in a Python thread instead.
 */
#ifndef PCPEMU_XZRING_H
#define PCPEMU_XZRING_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XZ_RING_BLOCKS 4
#define XZ_RING_BLOCK (512 << 10)	/* stays in a core's L2 with the parse (pcpemu.kernel.ftrace._BLOCK: measured) */
#define XZ_RING_INPUT (64 << 10)

/* What the producer ended on (xz_ring_status). */
enum xz_ring_status {
	XZ_RING_RUNNING = 0,
	XZ_RING_END,		/* every stream decoded */
	XZ_RING_TRUNCATED,	/* the file ended inside a stream */
	XZ_RING_CORRUPT,	/* liblzma refused the data */
	XZ_RING_READ_ERROR,	/* read(2) failed: xz_ring_errno */
	XZ_RING_STOPPED,	/* the consumer gave up */
};

#ifdef PCPEMU_HAVE_LZMA
#include <lzma.h>

#define XZ_RING_AVAILABLE 1

struct xz_ring {
	lzma_stream strm;
	int fd;
	int status;		/* enum xz_ring_status, set once by the producer */
	int read_errno;
	int stop;		/* set by the consumer */
	uint64_t produced;	/* blocks written (producer) */
	uint64_t consumed;	/* blocks read (consumer) */
	size_t len[XZ_RING_BLOCKS];
	uint8_t *block[XZ_RING_BLOCKS];
	uint8_t input[XZ_RING_INPUT];
};

/* A nap while the ring is full or empty: liblzma fills a block in ~1.3 ms here, so
 * a wait takes a few naps, and a side that waits burns next to no CPU. */
static inline void xz_ring_nap(void)
{
	struct timespec t = {0, 300000};
	nanosleep(&t, NULL);
}

/* A decoder with a thread per CPU (a one-block file decodes in one); liblzma before
 * 5.4 has none, and decodes in the producer alone. */
static inline lzma_ret xz_ring_decoder(lzma_stream *strm)
{
#if LZMA_VERSION >= 50040002
	lzma_mt mt = {0};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	mt.flags = LZMA_CONCATENATED;
	mt.threads = cpus > 1 ? (uint32_t)cpus : 1;
	mt.memlimit_threading = lzma_physmem() / 4;
	mt.memlimit_stop = UINT64_MAX;
	return lzma_stream_decoder_mt(strm, &mt);
#else
	return lzma_stream_decoder(strm, UINT64_MAX, LZMA_CONCATENATED);
#endif
}

static inline struct xz_ring *xz_ring_new(int fd)
{
	struct xz_ring *r = calloc(1, sizeof(*r));
	int i;

	if (!r)
		return NULL;
	r->fd = fd;
	r->strm = (lzma_stream)LZMA_STREAM_INIT;
	for (i = 0; i < XZ_RING_BLOCKS; i++)
		if (!(r->block[i] = malloc(XZ_RING_BLOCK)))
			goto fail;
	if (xz_ring_decoder(&r->strm) != LZMA_OK)
		goto fail;
	return r;
fail:
	for (i = 0; i < XZ_RING_BLOCKS; i++)
		free(r->block[i]);
	free(r);
	return NULL;
}

/* The producer: decode the whole file into the ring; returns its final status. */
static inline int xz_ring_run(struct xz_ring *r)
{
	lzma_action action = LZMA_RUN;
	int status = XZ_RING_RUNNING;
	lzma_ret ret;
	ssize_t got;
	size_t slot;

	while (status == XZ_RING_RUNNING) {
		while (r->produced - __atomic_load_n(&r->consumed, __ATOMIC_ACQUIRE) == XZ_RING_BLOCKS) {
			if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
				goto stopped;
			xz_ring_nap();
		}
		slot = r->produced % XZ_RING_BLOCKS;
		r->strm.next_out = r->block[slot];
		r->strm.avail_out = XZ_RING_BLOCK;
		while (r->strm.avail_out && status == XZ_RING_RUNNING) {
			if (!r->strm.avail_in && action == LZMA_RUN) {
				do
					got = read(r->fd, r->input, XZ_RING_INPUT);
				while (got < 0 && errno == EINTR);
				if (got < 0) {
					r->read_errno = errno;
					status = XZ_RING_READ_ERROR;
					break;
				}
				if (!got)
					action = LZMA_FINISH;
				r->strm.next_in = r->input;
				r->strm.avail_in = (size_t)got;
			}
			ret = lzma_code(&r->strm, action);
			if (ret == LZMA_STREAM_END)
				status = XZ_RING_END;
			else if (ret == LZMA_BUF_ERROR)
				status = XZ_RING_TRUNCATED;	/* no progress: input ran out */
			else if (ret != LZMA_OK)
				status = XZ_RING_CORRUPT;
			if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
				goto stopped;
		}
		/* The block first, then the status: a consumer that sees the status
		 * sees every block before it. An empty last block is not published. */
		r->len[slot] = XZ_RING_BLOCK - r->strm.avail_out;
		if (r->len[slot])
			__atomic_store_n(&r->produced, r->produced + 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&r->status, status, __ATOMIC_RELEASE);
	return status;
stopped:
	__atomic_store_n(&r->status, XZ_RING_STOPPED, __ATOMIC_RELEASE);
	return XZ_RING_STOPPED;
}

/*
 * The consumer: copy the next block into dst (room at least XZ_RING_BLOCK); returns
 * its length (never 0), or 0 once the producer has ended and every block was taken
 * (then xz_ring_status says how it ended).
 */
static inline size_t xz_ring_take(struct xz_ring *r, uint8_t *dst)
{
	size_t slot, n;

	while (__atomic_load_n(&r->produced, __ATOMIC_ACQUIRE) == r->consumed) {
		/* Status after blocks: once it is set, produced is final. */
		if (__atomic_load_n(&r->status, __ATOMIC_ACQUIRE) != XZ_RING_RUNNING &&
		    __atomic_load_n(&r->produced, __ATOMIC_ACQUIRE) == r->consumed)
			return 0;
		xz_ring_nap();
	}
	slot = r->consumed % XZ_RING_BLOCKS;
	n = r->len[slot];
	memcpy(dst, r->block[slot], n);
	__atomic_store_n(&r->consumed, r->consumed + 1, __ATOMIC_RELEASE);
	return n;
}

static inline int xz_ring_status(struct xz_ring *r)
{
	return __atomic_load_n(&r->status, __ATOMIC_ACQUIRE);
}

static inline int xz_ring_errno(struct xz_ring *r)
{
	return r->read_errno;
}

static inline void xz_ring_stop(struct xz_ring *r)
{
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
}

static inline void xz_ring_free(struct xz_ring *r)
{
	int i;

	lzma_end(&r->strm);
	for (i = 0; i < XZ_RING_BLOCKS; i++)
		free(r->block[i]);
	free(r);
}

#else	/* no liblzma headers at build time */

#define XZ_RING_AVAILABLE 0

struct xz_ring {
	int unused;
};

static inline struct xz_ring *xz_ring_new(int fd) { (void)fd; return NULL; }
static inline int xz_ring_run(struct xz_ring *r) { (void)r; return XZ_RING_STOPPED; }
static inline size_t xz_ring_take(struct xz_ring *r, uint8_t *dst) { (void)r; (void)dst; return 0; }
static inline int xz_ring_status(struct xz_ring *r) { (void)r; return XZ_RING_STOPPED; }
static inline int xz_ring_errno(struct xz_ring *r) { (void)r; return 0; }
static inline void xz_ring_stop(struct xz_ring *r) { (void)r; }
static inline void xz_ring_free(struct xz_ring *r) { (void)r; }

#endif
#endif
