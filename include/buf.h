/*
 * buf.h - a growable byte buffer with a consumed prefix: [start, end) holds the
 * unread bytes. Buffers belong to one connection and are reused for its whole
 * life, so the hot path does not allocate once a buffer has reached its
 * working size.
 */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct sp_buf {
	uint8_t *data;
	size_t start, end, cap;
} sp_buf_t;

/*
 * Grow the array *pp (elements of elem bytes, capacity *cap) to hold at least need
 * elements, doubling from 64; kept between uses, so a warm array is not reallocated.
 * False when out of memory (the array is left as it was).
 */
static inline bool sp_grow_array(void *pp, int *cap, int need, size_t elem)
{
	void **p = (void **)pp;
	if (need <= *cap)
		return true;
	int ncap = *cap ? *cap : 64;
	while (ncap < need)
		ncap *= 2;
	void *np = realloc(*p, (size_t)ncap * elem);
	if (!np)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

static inline size_t sp_buf_len(const sp_buf_t *b)
{
	return b->end - b->start;
}

static inline uint8_t *sp_buf_head(const sp_buf_t *b)
{
	return b->data + b->start;
}

/* Make room for n more bytes at the end; moves unread data to the front first. */
static inline bool sp_buf_reserve(sp_buf_t *b, size_t n)
{
	if (b->cap - b->end >= n)
		return true;
	if (b->start > 0) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
		if (b->cap - b->end >= n)
			return true;
	}
	size_t ncap = b->cap ? b->cap : 4096;
	while (ncap - b->end < n)
		ncap *= 2;
	uint8_t *p = realloc(b->data, ncap);
	if (!p)
		return false;
	b->data = p;
	b->cap = ncap;
	return true;
}

static inline void sp_buf_consume(sp_buf_t *b, size_t n)
{
	b->start += n;
	if (b->start >= b->end)
		b->start = b->end = 0;
}

static inline bool sp_buf_append(sp_buf_t *b, const void *p, size_t n)
{
	if (!sp_buf_reserve(b, n))
		return false;
	memcpy(b->data + b->end, p, n);
	b->end += n;
	return true;
}

static inline void sp_buf_reset(sp_buf_t *b)
{
	b->start = b->end = 0;
}

/* Give back memory of a buffer that grew large for one big message. */
static inline void sp_buf_shrink(sp_buf_t *b, size_t keep)
{
	if (b->cap > keep && sp_buf_len(b) == 0) {
		free(b->data);
		b->data = NULL;
		b->cap = b->start = b->end = 0;
	}
}

static inline void sp_buf_free(sp_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->cap = b->start = b->end = 0;
}

#endif
