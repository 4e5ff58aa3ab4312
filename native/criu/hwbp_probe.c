/* Does a hardware (debug-register) breakpoint fire on this machine?
 *
 * CRIU stops the parasite code it injects with an x86 debug-register
 * breakpoint; on VMs where those never fire, `criu dump` waits forever
 * ("Waiting for PID to trap") unless CRIU_FAULT=130 makes it fall back to
 * int3. This probe forks a child, ptraces it, sets DR0/DR7 on a function the
 * child then calls and reports whether the child stopped with SIGTRAP.
 *
 * Output: one line "hwbp=yes", "hwbp=no <why>" or "hwbp=error <why>";
 * exit status 0, 1 or 2 accordingly. Never waits more than ~3 s. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int sink;

__attribute__((noinline)) static void target(void) { sink++; }

static int report(int status, const char *what, const char *why) {
  printf("hwbp=%s%s%s\n", what, why ? " " : "", why ? why : "");
  return status;
}

/* waitpid with a deadline: 0 when the child changed state, -1 on timeout. */
static int wait_child(pid_t pid, int *st, int ms) {
  for (int waited = 0; waited <= ms; waited += 5) {
    pid_t r = waitpid(pid, st, WNOHANG);
    if (r == pid) return 0;
    if (r < 0 && errno != EINTR) return -1;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

static void finish(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

int main(void) {
#if !defined(__x86_64__) && !defined(__i386__)
  return report(2, "error", "not x86: debug registers are probed on x86 only");
#else
  pid_t pid = fork();
  if (pid < 0) return report(2, "error", "fork failed");
  if (pid == 0) {
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) _exit(3);
    raise(SIGSTOP);
    target();
    _exit(0);
  }
  int st;
  if (wait_child(pid, &st, 2000) != 0) {
    finish(pid);
    return report(2, "error", "child did not stop");
  }
  if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP) {
    finish(pid);
    return report(2, "error", "ptrace(PTRACE_TRACEME) failed in the child");
  }
  unsigned long dr7 = 1UL; /* L0 enabled, RW0=00 (execute), LEN0=00 */
  if (ptrace(PTRACE_POKEUSER, pid, (void *)offsetof(struct user, u_debugreg[0]), (void *)&target) != 0 ||
      ptrace(PTRACE_POKEUSER, pid, (void *)offsetof(struct user, u_debugreg[7]), (void *)dr7) != 0) {
    char why[96];
    snprintf(why, sizeof why, "PTRACE_POKEUSER(debugreg): %s", strerror(errno));
    finish(pid);
    return report(1, "no", why);
  }
  if (ptrace(PTRACE_CONT, pid, NULL, NULL) != 0) {
    finish(pid);
    return report(2, "error", "PTRACE_CONT failed");
  }
  if (wait_child(pid, &st, 2000) != 0) {
    finish(pid);
    return report(1, "no", "child neither trapped nor exited");
  }
  if (WIFSTOPPED(st) && WSTOPSIG(st) == SIGTRAP) {
    finish(pid);
    return report(0, "yes", NULL);
  }
  if (WIFEXITED(st)) return report(1, "no", "the breakpoint did not fire (child ran to exit)");
  finish(pid);
  return report(1, "no", "child stopped by another signal");
#endif
}
