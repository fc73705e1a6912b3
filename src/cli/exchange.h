/* cnn export / cnn import: the formats each own a file (export_onnx.c,
 * export_darknet.c, import_onnx.c, import_darknet.c); this header holds what they
 * share: the options every import takes and writing an imported model. */
#ifndef CNN_CLI_EXCHANGE_H
#define CNN_CLI_EXCHANGE_H

#include "cnn/cnn.h"

/* argv[0] is "export" / "import"; each parses its own flags, prints its errors and
 * returns the exit status (0 ok, 1 failed, 2 bad usage) */
int cli_export_onnx(int argc, char **argv);
int cli_export_darknet(int argc, char **argv);
int cli_import_onnx(int argc, char **argv);
int cli_import_darknet(int argc, char **argv);

/* What an imported model's checkpoint records besides its tensors. Imported models
 * take pixels scaled to [0, 1]: mean 0 and std 1 unless --mean/--std say otherwise. */
typedef struct cli_import_opts {
  const char *out;      /* --out DIR (required) */
  const char *mean_s;   /* --mean a,b,c: per-channel, in [0, 1] pixel units */
  const char *std_s;    /* --std a,b,c */
  const char *classes_s;/* --classes FILE (one name a line) or a,b,c */
  int force;            /* --force: replace DIR/model.cfg and DIR/model.safetensors */
} cli_import_opts;

/* consume argv[*i] (and its value) if it is one of the options above: 1 consumed,
 * 0 not ours, -1 bad usage (printed) */
int cli_import_flag(int argc, char **argv, int *i, cli_import_opts *o);
/* the help text of those options */
extern const char cli_import_flags_help[];

/* --classes: names from a file (one a line) or a comma-separated list, exactly
 * `classes` of them; NULL: "0", "1", ... (*out: `classes` strdup'd names, to free
 * with their array even on failure) */
cnn_status cli_class_names(const char *s, int classes, char ***out);

/* Write DIR/model.cfg (the net's cfg text) and DIR/model.safetensors (its tensors
 * as they are in the net's host copy, with the metadata cnn eval/predict/train read)
 * for a net built from cfg text with every tensor set. `source` names what it was
 * imported from (recorded as the checkpoint's data field). Refuses to replace an
 * existing model unless o->force; the files appear whole (temp + rename) or not at
 * all. Prints what it wrote on stderr. */
cnn_status cli_import_write(cnn_net *net, const cli_import_opts *o, const char *source);

#endif
