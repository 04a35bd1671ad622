/*
 * libFuzzer harness: the master's experiment-id sniffer, which reads
 * network bytes with privileges.  The input is fed the way the master
 * reads a socket, in growing prefixes whose sizes come from the input's
 * last byte, each prefix in its own exactly-sized allocation so that any
 * read past it is caught.  The incremental answer must equal the answer
 * for the whole input at once, and a name found must be a valid one that
 * really follows a domain or experiment-id key.
 */
#include "t/fuzz/fuzz.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static enum sniff_result
sniff_copy(struct sniff *sn, const uint8_t *data, size_t len,
    const char **why)
{
	enum sniff_result	 r;
	char			*copy;

	copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	if (len)
		memcpy(copy, data, len);
	r = sniff_expid(sn, copy, len, why);
	CHECK(sn->scanned <= len);
	free(copy);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sniff		 inc, once;
	enum sniff_result	 ri = SNIFF_MORE, ro;
	const char		*why;
	size_t			 have = 0, step;
	char			*hit;

	if (size == 0)
		return 0;
	step = (size_t)data[size - 1] % 64 + 1;
	size--;
	memset(&inc, 0, sizeof(inc));
	while (ri == SNIFF_MORE && have < size) {
		have = have + step > size ? size : have + step;
		ri = sniff_copy(&inc, data, have, &why);
		CHECK(ri != SNIFF_BAD || why != NULL);
	}
	memset(&once, 0, sizeof(once));
	ro = sniff_copy(&once, data, size, &why);
	CHECK(ri == ro);
	if (ro != SNIFF_FOUND)
		return 0;
	CHECK(strcmp(inc.name, once.name) == 0);
	CHECK(expname_valid(once.name, strlen(once.name), &why));
	/* the name is the value of a key line inside the bytes seen */
	hit = memmem(data, once.scanned, once.name, strlen(once.name));
	CHECK(hit != NULL);
	CHECK(memmem(data, once.scanned, "domain", 6) != NULL ||
	    memmem(data, once.scanned, "experiment-id", 13) != NULL);
	return 0;
}
