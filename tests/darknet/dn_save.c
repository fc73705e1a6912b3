/* Darknet's own random init of CFG saved as OUT.weights (its rolling variances are 0) */
#include "darknet.h"
int main(int argc, char **argv) {
  network *net = load_network(argv[1], 0, 0);
  save_weights(net, argv[2]);
  return 0;
}
