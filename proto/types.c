/*
 * The OML type names of §3.3 and the identifier rule of §3.2.  Every name
 * is accepted in every protocol version; the legacy aliases map onto
 * their modern type and are written back in canonical form.
 */
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

static const char *const canonical[OML_TYPE_MAX] = {
	[OML_INT32] = "int32",
	[OML_UINT32] = "uint32",
	[OML_INT64] = "int64",
	[OML_UINT64] = "uint64",
	[OML_DOUBLE] = "double",
	[OML_STRING] = "string",
	[OML_BLOB] = "blob",
	[OML_GUID] = "guid",
	[OML_BOOL] = "bool",
	[OML_VINT32] = "[int32]",
	[OML_VUINT32] = "[uint32]",
	[OML_VINT64] = "[int64]",
	[OML_VUINT64] = "[uint64]",
	[OML_VDOUBLE] = "[double]",
	[OML_VBOOL] = "[bool]",
};

/*
 * The original rejects "int" (although the wiki lists it) and vectors of
 * string, blob and guid; so do we, to keep the same databases.
 */
static const struct {
	const char	*name;
	enum oml_type	 type;
} aliases[] = {
	{ "integer", OML_INT32 },
	{ "long", OML_INT32 },
	{ "float", OML_DOUBLE },
	{ "real", OML_DOUBLE },
};

const char *
oml_type_name(enum oml_type t)
{
	if ((unsigned)t >= OML_TYPE_MAX)
		return "?";
	return canonical[t];
}

static int
name_is(const char *s, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(s, name, len) == 0;
}

int
oml_type_parse(const char *s, size_t len, enum oml_type *t)
{
	size_t	 i;

	for (i = 0; i < OML_TYPE_MAX; i++) {
		if (name_is(s, len, canonical[i])) {
			*t = (enum oml_type)i;
			return 0;
		}
	}
	for (i = 0; i < nitems(aliases); i++) {
		if (name_is(s, len, aliases[i].name)) {
			*t = aliases[i].type;
			return 0;
		}
	}
	return -1;
}

int
oml_type_is_vector(enum oml_type t)
{
	return is_vector_type(t);
}

static int
is_alpha_(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

int
oml_name_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || !is_alpha_((unsigned char)s[0]))
		return 0;
	for (i = 1; i < len; i++) {
		if (!is_alpha_((unsigned char)s[i]) &&
		    !(s[i] >= '0' && s[i] <= '9'))
			return 0;
	}
	return 1;
}
