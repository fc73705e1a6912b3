/* The cnn command: one file per subcommand. */
#ifndef CNN_CLI_H
#define CNN_CLI_H

#include "cnn/cnn.h"

int cnn_cmd_summary(int argc, char **argv);
int cnn_cmd_train(int argc, char **argv);
int cnn_cmd_eval(int argc, char **argv);
int cnn_cmd_predict(int argc, char **argv);
int cnn_cmd_devices(int argc, char **argv);
int cnn_cmd_export(int argc, char **argv);
int cnn_cmd_import(int argc, char **argv);
int cnn_cmd_dataset(int argc, char **argv);
int cnn_cmd_bench(int argc, char **argv);

/* A MODEL.cfg argument: as given when that file exists or it is a path (has a '/');
 * else the model of that name installed with cnn ("resnet9.cfg" or "resnet9", see
 * cnn_model_path). NULL when there is neither, cnn_last_error() saying where it
 * looked. The result stays valid until the next call. */
const char *cli_model_cfg(const char *arg);
/* s ends with suffix */
int cli_ends_with(const char *s, const char *suffix);
/* --conv-engine, --workspace, --tune-cache: the backend's engine settings */
typedef struct cli_engine {
  const char *conv_engine, *workspace, *tune_cache; /* NULL: the backend's default */
} cli_engine;
#define CLI_ENGINE_HELP                                                                     \
  "  --conv-engine E     cuda: auto (default) | own | cudnn | an engine name; cpu: own\n"    \
  "                      (default) | dnnl | dnnl-plain | auto (measured per shape)\n"      \
  "  --workspace MB      conv workspace the engine tuner may use (cuda)\n"                   \
  "  --tune-cache FILE   the tuner's cache, or off (default ~/.cache/cnn/)\n"
/* argv[*i] is one of them with a value: stores it, advances *i past the value and
 * returns 1; else 0 */
int cli_engine_arg(int argc, char **argv, int *i, cli_engine *e);
/* apply the settings given (e may be NULL) to b */
cnn_status cli_engine_apply(cnn_backend *b, const cli_engine *e);
/* print "cnn: <message>" to stderr and return 1 */
int cli_fail(const char *what);
/* parse a positive int flag value; prints an error and returns 0 on failure */
int cli_int(const char *flag, const char *v, int lo, int hi, int *out);

#endif
