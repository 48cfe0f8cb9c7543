// The platform floor of a fan-out: the cost of one small write() to a loopback TCP socket
// (one SSE delivery costs a server at least this). N connections, K rounds of one 160-byte
// write per connection; no server logic at all. Built and run by bench/run.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, k = argc > 2 ? atoi(argv[2]) : 50;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(l, (void *)&a, sizeof a); listen(l, 4096);
  socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
  int *w = malloc(n * sizeof(int)), *r = malloc(n * sizeof(int));
  for (int i = 0; i < n; i++) {
    r[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(r[i], (void *)&a, sizeof a)) { perror("connect"); return 1; }
    w[i] = accept(l, 0, 0);
    int one = 1; setsockopt(w[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  char msg[160]; memset(msg, 'x', sizeof msg);
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int j = 0; j < k; j++) for (int i = 0; i < n; i++) if (write(w[i], msg, sizeof msg) != sizeof msg) { perror("write"); return 1; }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3;
  printf("{\"workload\":\"floor\",\"label\":\"floor\",\"sockets\":%d,\"rounds\":%d,\"us_per_write\":%.2f,\"writes_per_s\":%.0f}\n",
         n, k, us / (n * (double)k), n * (double)k / us * 1e6);
  return 0;
}
