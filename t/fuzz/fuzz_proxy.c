/*
 * libFuzzer harness: the PROXY preamble parser, which the master runs on
 * network bytes with privileges, before anything else.  The input is fed
 * in growing prefixes (sizes from its last byte), each in its own exactly
 * sized allocation so that a read past it is caught.  The incremental
 * answer must equal the answer for the whole input, a complete preamble
 * must fit in what was read and in the limit, and a name must only come
 * with a family.
 */
#include <netinet/in.h>

#include "t/fuzz/fuzz.h"

#define LIMIT	1024

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
parse_copy(const uint8_t *data, size_t len, struct proxy_info *pi)
{
	const char	*why = NULL;
	char		*copy;
	int		 r;

	copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	if (len)
		memcpy(copy, data, len);
	r = proxy_parse(copy, len, LIMIT, pi, &why);
	CHECK(r >= PROXY_ABSENT && r <= (int)len && r <= LIMIT);
	CHECK((r < 0) == (why != NULL));
	free(copy);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_info	 inc, once;
	size_t			 have = 0, step;
	int			 ri = PROXY_MORE, ro;

	if (size == 0)
		return 0;
	step = (size_t)data[size - 1] % 32 + 1;
	size--;
	while (ri == PROXY_MORE && have < size) {
		have = have + step > size ? size : have + step;
		ri = parse_copy(data, have, &inc);
	}
	ro = parse_copy(data, size, &once);
	CHECK(ri == ro);
	if (ro <= 0)
		return 0;
	CHECK(inc.local == once.local);
	if (!once.local) {
		CHECK(once.src.ss_family == AF_INET ||
		    once.src.ss_family == AF_INET6);
		CHECK(once.src.ss_family == once.dst.ss_family);
		CHECK(memcmp(&inc.src, &once.src, sizeof(once.src)) == 0);
	}
	return 0;
}
