/* The pod sandbox's "pause" process, built locally so the runtime tests never
 * pull an image: it is PID 1 of the pod's PID namespace, so it must reap
 * re-parented children, and it must exit promptly on SIGTERM/SIGINT so that
 * StopPodSandbox does not wait for the kill timeout. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGINT, &sa, 0);
    sigaction(SIGTERM, &sa, 0);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, 0);
    for (;;)
        pause();
}
