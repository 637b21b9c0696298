/* Byte loops for mailaccess/_speedups/msgindex_c.pyx that want SIMD.
 *
 * Hand-written; SSE2 (x86-64 baseline) when the compiler offers it, a plain
 * loop otherwise, same results either way (tests/speedups compare the Cython
 * twin with the pure-Python one).
 */
#ifndef MAILACCESS_MSGINDEX_SIMD_H
#define MAILACCESS_MSGINDEX_SIMD_H

#include <stddef.h>

#if defined(__SSE2__) && defined(__x86_64__)
#include <emmintrin.h>
#define MI_HAVE_SSE2 1
#endif

/* How many bytes of p[0:n] equal c. */
static inline size_t mi_count_byte(const unsigned char *p, size_t n, unsigned char c)
{
    size_t count = 0, i = 0;
#ifdef MI_HAVE_SSE2
    const __m128i needle = _mm_set1_epi8((char)c);
    const __m128i zero = _mm_setzero_si128();
    while (n - i >= 16) {
        /* each lane counts up to 255 hits, then the lanes are summed */
        size_t blocks = (n - i) / 16, b;
        __m128i acc = zero, sums;
        if (blocks > 255)
            blocks = 255;
        for (b = 0; b < blocks; b++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(v, needle));
        }
        sums = _mm_sad_epu8(acc, zero);
        count += (size_t)_mm_cvtsi128_si64(sums)
               + (size_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
    }
#endif
    for (; i < n; i++)
        count += p[i] == c;
    return count;
}

#endif
