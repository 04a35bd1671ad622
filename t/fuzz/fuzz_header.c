/*
 * libFuzzer harness: the child's header phase.  The input is what a
 * client sends after connecting: header lines framed by line_next, split
 * by header_split, experiment names checked by expname_valid and schema
 * declarations parsed by schema_parse (whose canonical form must read
 * back as the same schema).  The whole input is also tried as one schema
 * declaration and as one type name.
 */
#include "t/fuzz/fuzz.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_conn	 c;
	enum oml_type	 t;
	const char	*buf = (const char *)data;
	size_t		 off;

	memset(&c, 0, sizeof(c));
	off = fz_headers(&c, buf, size);
	CHECK(off <= size);
	CHECK(c.ended || off == size);
	fz_conn_free(&c);

	fz_declare(&c, buf, size);
	fz_conn_free(&c);

	if (oml_type_parse(buf, size, &t) == 0) {
		CHECK(t < OML_TYPE_MAX);
		CHECK(oml_type_parse(oml_type_name(t),
		    strlen(oml_type_name(t)), &t) == 0);
	}
	return 0;
}
