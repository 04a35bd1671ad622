/*
 * The start-up check of the backend, which the master runs before it
 * listens: in a process of its own, with the experiment processes'
 * privileges, can the backend work?  A backend that stores in the data
 * directory also locks it there, and the lock comes back to the master,
 * which keeps it open, unused, until it exits (spares close it, and it is
 * close-on-exec): one data directory, one server.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <unistd.h>

#include "child/child.h"

/*
 * 0 if the backend can be used, with *lock the data directory's lock (or
 * -1: none); -1 if it cannot (the probe has logged why).
 */
int
child_probe(const struct child_conf *conf, int *lock)
{
	static struct msg	 m;
	pid_t			 pid;
	int			 status, sv[2], fd;

	*lock = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		fatal("socketpair");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		close_except(sv[1], log_fd());
		priv_drop(&conf->ids);
		if (conf->backend->probe(conf, &fd) == -1 ||
		    msg_send(sv[1], MSG_LOCK, fd, NULL, 0) == -1)
			_exit(1);
		_exit(0);
	}
	close(sv[1]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			fatal("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		close(sv[0]);
		return -1;
	}
	if (msg_recv(sv[0], &m) != 1 || m.hdr.type != MSG_LOCK ||
	    (backend_files(conf->backend) && m.fd == -1))
		fatalx("the data directory's lock did not arrive");
	close(sv[0]);
	*lock = m.fd;
	return 0;
}
