/*
 * Standard base64 (RFC 4648 alphabet, '=' padding), as text mode carries
 * blobs (§5.2).  The decoder is strict: a length that is not a multiple
 * of 4, a byte outside the alphabet, or padding anywhere but at the end
 * makes the whole value invalid, and the caller stores NULL.
 */
#include <limits.h>

#include "proto/proto.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
b64_encode(char *out, const void *in, size_t len)
{
	const uint8_t	*p = in;
	size_t		 i, o = 0;
	uint32_t	 w;

	for (i = 0; i + 2 < len; i += 3) {
		w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = alphabet[w >> 18];
		out[o++] = alphabet[(w >> 12) & 63];
		out[o++] = alphabet[(w >> 6) & 63];
		out[o++] = alphabet[w & 63];
	}
	if (i < len) {
		w = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)p[i + 1] << 8;
		out[o++] = alphabet[w >> 18];
		out[o++] = alphabet[(w >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(w >> 6) & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

/* 0..63, or 64 for anything outside the alphabet. */
static uint8_t
sextet(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return 64;
}

long
b64_decode_inplace(char *s, size_t len)
{
	size_t		 i, o = 0, pad = 0, j;
	uint32_t	 w;
	uint8_t		 v;

	if (len % 4 != 0 || len / 4 * 3 > LONG_MAX)
		return -1;
	if (len > 0 && s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len; i += 4) {
		w = 0;
		for (j = 0; j < 4; j++) {
			if (i + j >= len - pad)
				v = 0;
			else if ((v = sextet((unsigned char)s[i + j])) == 64)
				return -1;
			w = w << 6 | v;
		}
		s[o++] = (char)(w >> 16);
		s[o++] = (char)(w >> 8);
		s[o++] = (char)w;
	}
	return (long)(o - pad);
}
