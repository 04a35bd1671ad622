/*
 * child/pqlib.h -- private to the PostgreSQL backend: libpq, loaded with
 * dlopen() by the first experiment process that needs it.  Linking libpq
 * would map it, and the TLS and LDAP libraries it pulls in, into every
 * process, the master and every SQLite experiment included, where their
 * constructors alone cost megabytes of memory.  store_pg.c calls the
 * usual PQ names; the macros below route them through the table.
 */
#ifndef CHILD_PQLIB_H
#define CHILD_PQLIB_H

#include <libpq-fe.h>

#define PQLIB_FUNCS(X)							\
	X(PQclear) X(PQresultStatus) X(PQresultErrorMessage)		\
	X(PQntuples) X(PQfinish) X(PQexec) X(PQstatus) X(PQgetvalue)	\
	X(PQuser) X(PQputCopyData) X(PQerrorMessage)			\
	X(PQtransactionStatus) X(PQsetNoticeProcessor)			\
	X(PQresultErrorField) X(PQparameterStatus) X(PQfreemem)	\
	X(PQexecParams) X(PQputCopyEnd) X(PQgetResult)			\
	X(PQescapeIdentifier) X(PQconninfoParse) X(PQconninfoFree)	\
	X(PQconnectdbParams) X(PQcmdTuples)

#define PQLIB_MEMBER(f)	__typeof__(f) *f;
struct pqlib {
	PQLIB_FUNCS(PQLIB_MEMBER)
};
#undef PQLIB_MEMBER

extern struct pqlib	 pqlib;

/* Load libpq once.  Returns -1 (logged) if it cannot be had. */
int	 pqlib_load(void);

#ifndef PQLIB_IMPL
#define PQclear			pqlib.PQclear
#define PQresultStatus		pqlib.PQresultStatus
#define PQresultErrorMessage	pqlib.PQresultErrorMessage
#define PQntuples		pqlib.PQntuples
#define PQfinish		pqlib.PQfinish
#define PQexec			pqlib.PQexec
#define PQstatus		pqlib.PQstatus
#define PQgetvalue		pqlib.PQgetvalue
#define PQuser			pqlib.PQuser
#define PQputCopyData		pqlib.PQputCopyData
#define PQerrorMessage		pqlib.PQerrorMessage
#define PQtransactionStatus	pqlib.PQtransactionStatus
#define PQsetNoticeProcessor	pqlib.PQsetNoticeProcessor
#define PQresultErrorField	pqlib.PQresultErrorField
#define PQparameterStatus	pqlib.PQparameterStatus
#define PQfreemem		pqlib.PQfreemem
#define PQexecParams		pqlib.PQexecParams
#define PQputCopyEnd		pqlib.PQputCopyEnd
#define PQgetResult		pqlib.PQgetResult
#define PQescapeIdentifier	pqlib.PQescapeIdentifier
#define PQconninfoParse		pqlib.PQconninfoParse
#define PQconninfoFree		pqlib.PQconninfoFree
#define PQconnectdbParams	pqlib.PQconnectdbParams
#define PQcmdTuples		pqlib.PQcmdTuples
#endif

#endif /* CHILD_PQLIB_H */
