/*
 * Privilege drop, in one function and one order, then proven.  Names are
 * looked up early, while /etc is certainly readable; the drop happens in
 * each child before it sees any client byte, and leaves the child (and
 * every hook it starts) unable to gain privileges again.
 */
#include <sys/prctl.h>
#include <sys/types.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/*
 * Resolve --user and --group.  Without --group the user's primary group
 * is used.  Returns -1 with a logged reason.
 */
int
priv_lookup(const char *user, const char *group, struct priv_ids *ids)
{
	struct passwd	*pw;
	struct group	*gr;

	memset(ids, 0, sizeof(*ids));
	if (user == NULL)
		return 0;
	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_error("unknown user \"%s\"", user);
		return -1;
	}
	ids->uid = pw->pw_uid;
	ids->gid = pw->pw_gid;
	ids->user = xstrdup(pw->pw_name);
	ids->home = xstrdup(pw->pw_dir);
	if (group != NULL) {
		if ((gr = getgrnam(group)) == NULL) {
			log_error("unknown group \"%s\"", group);
			return -1;
		}
		ids->gid = gr->gr_gid;
	}
	ids->set = 1;
	return 0;
}

/*
 * From here on nothing this process runs, hooks included, can gain a
 * privilege: setuid and setgid bits and file capabilities of the programs
 * it executes have no effect.  The flag is inherited across fork() and
 * execve() and cannot be cleared; verify that it is set.
 */
static void
no_new_privs(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("prctl PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		fatalx("no_new_privs is not set after PR_SET_NO_NEW_PRIVS");
}

/*
 * Drop to ids (if --user gave any) and prove that the old ids cannot be
 * regained; then, with or without a drop, forbid gaining new privileges.
 */
void
priv_drop(const struct priv_ids *ids)
{
	uid_t	 ruid, euid, suid;
	gid_t	 rgid, egid, sgid;

	if (!ids->set) {
		no_new_privs();
		return;
	}
	if (setgroups(1, &ids->gid) == -1)
		fatal("setgroups");
	if (setresgid(ids->gid, ids->gid, ids->gid) == -1)
		fatal("setresgid");
	if (setresuid(ids->uid, ids->uid, ids->uid) == -1)
		fatal("setresuid");
	if (getresuid(&ruid, &euid, &suid) == -1 ||
	    getresgid(&rgid, &egid, &sgid) == -1)
		fatal("getresuid");
	if (ruid != ids->uid || euid != ids->uid || suid != ids->uid ||
	    rgid != ids->gid || egid != ids->gid || sgid != ids->gid)
		fatalx("privilege drop left other ids in place");
	if (ids->uid != 0 && (setuid(0) != -1 || seteuid(0) != -1))
		fatalx("privileges could be regained after the drop");
	if (ids->gid != 0 && (setgid(0) != -1 || setegid(0) != -1))
		fatalx("group privileges could be regained after the drop");
	no_new_privs();
}
