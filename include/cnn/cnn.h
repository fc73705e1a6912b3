/* cnn: convolutional neural networks in C. The library's whole public API.
 *
 * Every call returns a cnn_status; on failure cnn_last_error() says what was wrong
 * and where (file:line of a cfg, byte offset of a bad file). Handles are opaque. */
#ifndef CNN_CNN_H
#define CNN_CNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cnn_status {
  CNN_OK = 0,
  CNN_ERR_ARG,         /* bad argument from the caller */
  CNN_ERR_PARSE,       /* malformed cfg or file */
  CNN_ERR_SHAPE,       /* shapes that cannot connect, sizes out of range */
  CNN_ERR_IO,          /* cannot open, read or write a file */
  CNN_ERR_NOMEM,       /* out of host or device memory */
  CNN_UNSUPPORTED,     /* this backend does not implement the op */
  CNN_ERR_DEVICE,      /* a CUDA / device call failed */
  CNN_ERR_NUMERIC      /* NaN or Inf where a finite value was needed */
} cnn_status;

/* The message of the last failed call on this thread ("" if none). */
const char *cnn_last_error(void);
const char *cnn_status_name(cnn_status s);

/* ---- version and installed models --------------------------------------- */
/* This libcnn's version, "MAJOR.MINOR.PATCH" (the CMake package's and cnn.pc's). */
const char *cnn_version(void);
/* The path of a model cfg shipped with cnn, by name: "lenet.cfg" or "lenet" (".cfg"
 * added when needed); NULL or "" gives the models directory itself. Looked for in
 * the models directory installed with this libcnn (PREFIX/share/cnn/models, found
 * from where libcnn was loaded, so a moved prefix still works), for the libcnn of a
 * build tree in the source tree's models/, then in the configured install
 * directory. The path (absolute) is written to path[n]. CNN_ERR_IO when there is no
 * such model, cnn_last_error() naming where it looked and the models found there;
 * CNN_ERR_ARG for a name with a '/' (a path, not a name) or a path longer than n. */
cnn_status cnn_model_path(const char *name, char *path, size_t n);

/* ---- backends ---------------------------------------------------------- */
typedef struct cnn_backend cnn_backend;

/* name: "ref" (plain reference loops), "cpu" (OpenBLAS + OpenMP), "cuda".
 * "cuda" lives in the module libcnn_cuda.so, which libcnn loads (dlopen) on first
 * need: from $CNN_CUDA_MODULE (a full path; when set, the only place looked), else
 * libcnn's own directory, the program's, the configured install lib dir, the library
 * search path. libcnn itself links no CUDA library. Without the module, the CUDA libraries
 * or a device, creating "cuda" fails with CNN_UNSUPPORTED and cnn_last_error()
 * says why (e.g. the loader's "libcudart.so.13: cannot open shared object file"). */
cnn_status cnn_backend_create(const char *name, cnn_backend **out);
void cnn_backend_destroy(cnn_backend *b);
/* Engine settings of backend b (docs/gpu-engines.md), before building nets on it:
 *   "conv-engine"  auto (default) | own | cudnn | an engine name: which conv
 *                  implementations the tuner may choose from (cuda)
 *   "workspace"    megabytes of conv workspace the tuner may plan (cuda; default
 *                  an eighth of the free device memory, at most 1 GiB)
 *   "tune-cache"   the tuner's cache file, or "off" (cuda; default
 *                  ~/.cache/cnn/tune-<device>.txt)
 * A backend with one implementation per op (cpu, ref) accepts conv-engine auto and
 * refuses every other setting with CNN_UNSUPPORTED naming it. */
cnn_status cnn_backend_set_option(cnn_backend *b, const char *key, const char *value);
const char *cnn_backend_name(const cnn_backend *b);
/* Host memory that backend b (a cnn_backend *, void * so these fit callbacks)
 * uploads from fastest: pinned for cuda, 64-byte aligned malloc elsewhere.
 * NULL on failure. */
void *cnn_host_alloc(void *b, size_t bytes);
void cnn_host_free(void *b, void *p);
/* Memory backend b can still allocate: *avail bytes free now, of *total (either
 * pointer may be NULL); *source (may be NULL) names where *avail was read.
 * cpu, ref: host memory, MemAvailable of /proc/meminfo lowered to what a cgroup
 * memory limit leaves (limit - (usage - inactive file pages), for the process's
 * cgroup and each one above it; v2 memory.max or v1 memory.limit_in_bytes).
 * cuda: cudaMemGetInfo on the backend's device.
 * $CNN_MEMORY_LIMIT replaces both figures on every backend without measuring:
 * bytes, or a number with K, M, G or T (powers of 1024), e.g. 1500M. For tests,
 * and to keep room for other programs; a malformed value is CNN_ERR_ARG. */
cnn_status cnn_backend_mem_info(cnn_backend *b, size_t *avail, size_t *total,
                                const char **source);
/* CPU threads (issue 11). cnn_cpu_cores: the cores this process may use, the
 * fewer of its affinity mask (sched_getaffinity) and its cgroup's CPU quota rounded
 * up (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, its cgroup and each one
 * above). cnn_cpu_threads: the OpenMP team size the cpu backend runs on this thread;
 * unless OMP_NUM_THREADS is set it first lowers the team to cnn_cpu_cores()
 * (omp_set_num_threads; libgomp honours affinity but not quotas); cnn_backend_create
 * ("cpu") calls it. *source (may be NULL) names where the count came from. */
int cnn_cpu_cores(const char **source);
int cnn_cpu_threads(const char **source);
/* Call first thing in main, before any OpenMP: if OMP_WAIT_POLICY is unset it sets
 * it to "passive" and re-executes the program (/proc/self/exe, same argv), since
 * libgomp reads its environment once, when it is loaded. Spinning workers stall
 * every parallel region when another process keeps a core busy (README,
 * Benchmarks); sleeping ones do not. Returns when nothing is to do or the exec
 * failed. The cnn command and bench_train call it; other programs may.
 * cnn_cpu_wait_policy: OMP_WAIT_POLICY as this process runs with it. */
void cnn_cpu_env_defaults(char **argv);
const char *cnn_cpu_wait_policy(void);

/* 1 if this build of cnn includes the CUDA backend (libcnn_cuda.so was built with
 * this libcnn). It does not load the module, so it does not say that the module or
 * a GPU is usable here: cnn_cuda_device_count() does. */
int cnn_have_cuda(void);

/* CUDA devices visible to this process. Loads the CUDA module on first call (see
 * cnn_backend_create). 0 when none is usable; cnn_last_error() then says why: no
 * CUDA in this build, the module or the CUDA libraries it needs could not be
 * loaded (with the loader's message), or the CUDA runtime found no device. */
typedef struct cnn_device_info {
  char name[256];
  int cc_major, cc_minor;   /* compute capability */
  int sms;                  /* streaming multiprocessors */
  size_t mem_total, mem_free;
  size_t l2_bytes;
  size_t smem_per_block_optin;
  int clock_khz, mem_bus_bits;
} cnn_device_info;
int cnn_cuda_device_count(void);
cnn_status cnn_cuda_device_info(int index, cnn_device_info *info);

/* ---- nets ---------------------------------------------------------------- */
typedef struct cnn_net cnn_net;

typedef enum cnn_mode { CNN_MODE_INFER = 0, CNN_MODE_TRAIN = 1 } cnn_mode;

/* Parse a Darknet-format cfg (file or text) into an unbuilt net: layers and shapes
 * are inferred, nothing is allocated yet. `name` is used in error messages. */
cnn_status cnn_net_from_cfg_file(const char *path, cnn_net **out);
cnn_status cnn_net_from_cfg_text(const char *text, const char *name, cnn_net **out);
void cnn_net_destroy(cnn_net *net);

typedef struct cnn_net_info {
  int batch, height, width, channels; /* input, from [net] */
  int classes;                        /* size of the last layer's output */
  int num_layers;                     /* internal layers (a cfg section may be 1-3) */
  int num_sections;                   /* cfg sections after [net] */
  size_t num_params;                  /* trainable parameters */
  size_t num_state;                   /* non-trainable (batch-norm running stats) */
  double flops_per_image;             /* forward multiply-adds x2 */
} cnn_net_info;
cnn_status cnn_net_info_get(const cnn_net *net, cnn_net_info *info);

/* Print the per-layer table (output shape, params, FLOPs), totals and the
 * memory plan for `batch` images (0: the cfg's batch) to `f` (a FILE *). */
cnn_status cnn_net_summary(const cnn_net *net, int batch, void *f);

/* Training hyper-parameters: read from the cfg ([net] and an optional [train]
 * section); a caller may change them before cnn_net_build. */
typedef enum cnn_optimizer_kind { CNN_OPT_SGD = 0, CNN_OPT_ADAM, CNN_OPT_ADAMW } cnn_optimizer_kind;
typedef enum cnn_schedule_kind {
  CNN_SCHED_CONSTANT = 0, CNN_SCHED_STEP, CNN_SCHED_COSINE, CNN_SCHED_ONECYCLE,
  CNN_SCHED_POLY           /* Darknet's poly: lr (1 - t/T)^power */
} cnn_schedule_kind;

typedef struct cnn_train_config {
  cnn_optimizer_kind optimizer;
  float learning_rate;
  float momentum;          /* SGD momentum */
  int nesterov;
  float weight_decay;      /* SGD: L2 added to the gradient; AdamW: decoupled */
  float beta1, beta2, eps; /* Adam */
  cnn_schedule_kind schedule;
  int warmup_steps;        /* linear warm-up from 0 (all schedules) */
  int step_size;           /* STEP: multiply by gamma every step_size steps */
  float gamma;
  float final_lr_frac;     /* COSINE / ONECYCLE: lr at the end = lr * this */
  float power;             /* POLY */
  int64_t total_steps;     /* for COSINE / ONECYCLE / POLY; 0: from epochs at train time */
  float label_smoothing;
  float bn_momentum;       /* running = (1-m) running + m batch, as PyTorch */
  float bn_eps;
  int init;                /* 0 Kaiming (He) normal, 1 Xavier uniform */
  uint64_t seed;
  int epochs;
} cnn_train_config;
cnn_status cnn_net_train_config(cnn_net *net, cnn_train_config *cfg);
cnn_status cnn_net_set_train_config(cnn_net *net, const cnn_train_config *cfg);

/* Numeric precision of a build. fp32: f32 everywhere. tf32: f32 storage, matrix
 * products may round their inputs to TF32 (GPUs of compute capability >= 8.0).
 * bf16: bf16 activations and gradients with f32 accumulation, f32 master weights,
 * optimizer state and batch-norm statistics (checkpoints always hold f32).
 * auto: bf16 where the backend runs it, fp32 elsewhere. */
typedef enum cnn_precision {
  CNN_PRECISION_AUTO = 0, CNN_PRECISION_FP32, CNN_PRECISION_TF32, CNN_PRECISION_BF16
} cnn_precision;
/* "auto", "fp32", "tf32", "bf16"; anything else is CNN_ERR_ARG naming the choices */
cnn_status cnn_precision_parse(const char *s, cnn_precision *out);
const char *cnn_precision_name(cnn_precision p);
/* Choose the precision of the net's next build on backend b; auto is resolved
 * here and *p is set to the result (p may be NULL: fp32). A precision b cannot
 * run is refused with CNN_UNSUPPORTED, naming it and the backend. */
cnn_status cnn_net_set_precision(cnn_net *net, const cnn_backend *b, cnn_precision p);
cnn_precision cnn_net_precision(const cnn_net *net);

/* Plan and allocate everything for `batch` images (0: the cfg's) on backend `b`
 * in `mode`; parameters are initialised from the seed. A built net may be built
 * again (another batch, mode or backend): parameters are carried over. */
cnn_status cnn_net_build(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode);

typedef struct cnn_plan_info {
  int batch;
  cnn_mode mode;
  size_t param_bytes, grad_bytes, opt_state_bytes, state_bytes;
  size_t activation_bytes;      /* the arena after liveness placement */
  size_t activation_bytes_naive;/* sum of all activation buffers, no reuse */
  size_t workspace_bytes;
  size_t peak_bytes;            /* all of the above */
} cnn_plan_info;
cnn_status cnn_net_plan_info(const cnn_net *net, cnn_plan_info *info);

/* Print a memory plan (cnn_net_plan_info or cnn_net_plan_estimate) to `f`. */
cnn_status cnn_plan_print(const cnn_plan_info *plan, const char *backend, void *f);

/* The plan cnn_net_build would make, computed without allocating (the backend
 * is asked only for its conv workspace sizes). The net must not be built. */
cnn_status cnn_net_plan_estimate(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode,
                                 cnn_plan_info *info);

/* ---- batch size from memory -----------------------------------------------
 * Whether a batch fits backend b's free memory (cnn_backend_mem_info, so also
 * $CNN_MEMORY_LIMIT), and the largest multiple of 8 that does. A batch needs its
 * memory plan (cnn_net_plan_estimate's peak_bytes) plus what the caller allocates
 * in the same memory besides the net (extra_fixed + extra_per_image x batch: a
 * loader's batch buffers on the cpu, a bound training set on a GPU), plus a margin
 * of CNN_BATCH_MARGIN_PERCENT percent of those two, (plan + extra) / 100 x 10, and
 * CNN_BATCH_RESERVE bytes: for allocator rounding, the libraries' own buffers
 * (OpenBLAS, cuBLAS, CUDA graphs) and the program's small allocations, which no
 * plan counts. The free memory is read when called: memory the program already
 * holds (a loaded data set) is not free and is not counted again. */
#define CNN_BATCH_MARGIN_PERCENT 10
#define CNN_BATCH_RESERVE ((size_t)64 << 20)
typedef struct cnn_batch_fit {
  size_t extra_fixed, extra_per_image; /* in: the caller's other allocations in b's memory */
  int batch;                           /* the batch checked or found */
  size_t plan_bytes;                   /* its plan's peak_bytes */
  size_t extra_bytes;                  /* extra_fixed + extra_per_image x batch */
  size_t margin_bytes;                 /* (plan + extra) / 100 x 10 + CNN_BATCH_RESERVE */
  size_t need_bytes;                   /* plan + extra + margin */
  size_t avail_bytes, total_bytes;     /* cnn_backend_mem_info's */
  const char *source;                  /* where avail_bytes came from */
} cnn_batch_fit;
/* Does `batch` (0: the cfg's) fit? CNN_OK, or CNN_ERR_NOMEM with the bytes needed
 * and available in cnn_last_error(); fit is filled either way (its extra_* fields
 * are read). The net must not be built. */
cnn_status cnn_net_batch_check(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode,
                               cnn_batch_fit *fit);
/* The largest multiple of 8 that fits, up to max_batch (<= 0 or over 65536: 65536;
 * under 8: 8), in fit->batch with its figures. Bisection over the plan estimate:
 * the batch found fits and the next multiple of 8 does not (or is over the cap).
 * CNN_ERR_NOMEM when not even 8 fits, fit then holding batch 8's figures. */
cnn_status cnn_net_max_batch(cnn_net *net, cnn_backend *b, cnn_mode mode, int max_batch,
                             cnn_batch_fit *fit);

/* Re-initialise parameters from `seed` (counter-based RNG: same seed, same values
 * on every backend). */
cnn_status cnn_net_init_params(cnn_net *net, uint64_t seed);

/* Inputs are host arrays: x is [n, height, width, channels] float (NHWC), labels
 * [n] int32 in [0, classes). n must be <= the built batch. */
typedef struct cnn_step_result {
  double loss;     /* mean cross-entropy over the n images */
  int correct;     /* top-1 hits */
} cnn_step_result;
cnn_status cnn_net_train_step(cnn_net *net, const float *x, const int32_t *labels, int n,
                              cnn_step_result *res);
/* Forward in the built mode's inference semantics (running BN stats, no dropout).
 * probs (optional) receives [n, classes] softmax probabilities. labels optional. */
cnn_status cnn_net_predict(cnn_net *net, const float *x, const int32_t *labels, int n,
                           float *probs, cnn_step_result *res);
/* ---- training without waiting for the host ------------------------------
 * cnn_net_train_launch stages a host batch (copied before it returns, so x and
 * labels may be reused at once) and launches one training step: forward, loss,
 * backward and optimizer as one compiled step program, without waiting for it
 * (on cuda the step is a CUDA graph replay). A step whose input or loss is not
 * finite is refused on the device: parameters, optimizer state and batch-norm
 * statistics stay bit-identical, and the metrics count it. */
cnn_status cnn_net_train_launch(cnn_net *net, const float *x, const int32_t *labels, int n);

typedef struct cnn_train_metrics {
  int64_t step;          /* training steps accepted (the next step's index) */
  int64_t launched;      /* steps launched so far (accepted + refused + in flight) */
  int64_t refused;       /* steps refused for a non-finite input or loss */
  int64_t last_refused;  /* index of the last refused step, -1: none */
  int64_t seen, correct; /* images and top-1 hits since cnn_net_train_metrics_reset */
  double loss_sum;       /* sum of per-image losses, idem */
  float lr;              /* learning rate of the last step */
  int fresh;             /* 1: read by this call; 0: the previous read (one in flight) */
} cnn_train_metrics;
/* The training metrics as of the last completed read. wait = 0 never blocks: it
 * returns what an earlier asynchronous read brought and starts the next one;
 * wait = 1 waits for every launched step and returns their metrics. */
cnn_status cnn_net_train_metrics(cnn_net *net, int wait, cnn_train_metrics *m);
/* Zero seen/correct/loss_sum (ordered after the steps already launched). */
cnn_status cnn_net_train_metrics_reset(cnn_net *net);
/* The mean loss of accepted steps from, from+1, ... as of the last read: the
 * number of steps written to out (at most count; the last 1024 steps are kept). */
int cnn_net_step_losses(const cnn_net *net, int64_t from, int count, float *out);

/* A training set in backend memory: cnn_net_bind_data copies a loader
 * configuration's uint8 dataset (images, labels, a normalisation table) into the
 * backend once, and each step launched by cnn_net_train_bound makes its batch there
 * with a gather node at the head of the step program: the epoch's order, crop,
 * flip, cutout and normalisation, keyed by (seed, epoch, position) exactly as
 * cnn_loader makes them, so every backend sees the loader's batches bit for bit.
 * cfg is a cnn_loader_config (cnn/loader.h); its threading and allocator fields are
 * ignored. The net must be built for training; building it again unbinds the data.
 * CNN_ERR_NOMEM when the backend cannot hold the dataset (stream it through a
 * cnn_loader and cnn_net_train_launch instead). */
cnn_status cnn_net_bind_data(cnn_net *net, const void *loader_config);
/* Launch up to k steps of epoch `epoch`, starting at batch `first`; *launched gets
 * the number launched (fewer at the end of the epoch). No step waits for the host. */
cnn_status cnn_net_train_bound(cnn_net *net, int epoch, int first, int k, int *launched);
/* batches per epoch of the bound dataset (0 if none) */
int cnn_net_bound_batches(const cnn_net *net);

/* Execution switches, before or after building: fusion of layer chains (conv + BN
 * + activation, residual add + activation; default on) and CUDA-graph replay of
 * step programs (default on; no effect on ref and cpu). */
cnn_status cnn_net_set_fusion(cnn_net *net, int on);
cnn_status cnn_net_set_graphs(cnn_net *net, int on);
/* Print the step program for (batch, mode) of a built net: one line per node. */
cnn_status cnn_net_program_print(cnn_net *net, int batch, cnn_mode mode, void *f);
/* Profiling (a debugging aid: every node is waited for, so steps run slower):
 * with it on, each program run times its nodes; print the time per op kind of the
 * (batch, mode) program so far. */
cnn_status cnn_net_set_profile(cnn_net *net, int on);
cnn_status cnn_net_profile_print(cnn_net *net, int batch, cnn_mode mode, void *f);

/* The learning rate the next train step will use, and the step counter. */
float cnn_net_current_lr(const cnn_net *net);
/* The learning rate of training step `step` (0-based) under the net's schedule. */
float cnn_net_lr_at(const cnn_net *net, int64_t step);
int64_t cnn_net_step_count(const cnn_net *net);
cnn_status cnn_net_set_step_count(cnn_net *net, int64_t step, int64_t total_steps);

/* Parameters and state by name, for checkpoints and interop. Tensor data is
 * copied to/from host float arrays. */
typedef struct cnn_param_desc {
  const char *name;   /* e.g. "conv1.weight", "conv1.bn.running_mean" */
  int ndim;
  int64_t shape[4];
  size_t count;
  int trainable;      /* 0 for running statistics */
  int frozen;         /* 1: in a frozen section (cnn_net_set_frozen) */
} cnn_param_desc;
int cnn_net_num_tensors(const cnn_net *net);
cnn_status cnn_net_tensor_desc(const cnn_net *net, int i, cnn_param_desc *d);
cnn_status cnn_net_tensor_get(const cnn_net *net, int i, float *dst);
cnn_status cnn_net_tensor_set(cnn_net *net, int i, const float *src);
/* Optimizer state tensors (momentum / Adam m and v), same order as trainable
 * tensors; slot 0 or 1. Sizes match the parameter. */
cnn_status cnn_net_opt_state_get(const cnn_net *net, int slot, float *dst, size_t count);
cnn_status cnn_net_opt_state_set(cnn_net *net, int slot, const float *src, size_t count);
int cnn_net_opt_slots(const cnn_net *net);

/* Save / load every named tensor as safetensors (f32, row-major as stored,
 * KRSC conv weights). Writes go to a temp file then rename. A net built for
 * training also saves its optimizer state ("optimizer.<slot>.<name>"), which
 * cnn_net_load restores when the file holds it (a file without it loads too: the
 * optimizer state is then left as it was). */
cnn_status cnn_net_save(const cnn_net *net, const char *path, const char *metadata_json);
cnn_status cnn_net_load(cnn_net *net, const char *path);
/* cnn_net_save with flags: CNN_SAVE_NO_OPTIMIZER leaves the optimizer state out
 * (a file for inference or fine-tuning, about a third or half the size) */
#define CNN_SAVE_NO_OPTIMIZER 1u
cnn_status cnn_net_save_flags(const cnn_net *net, const char *path, const char *metadata_json,
                              unsigned flags);

/* Starting from another model's weights (fine-tuning): every tensor of the net
 * whose name and shape match one in the safetensors file at `path` is copied from
 * it; the others keep their values (the initialisation from the seed). Optimizer
 * state and the step count are not read. The file's tensors are checked (F32,
 * finite) before anything changes; a file with no matching tensor is refused.
 * rep (may be NULL) says what happened to each tensor: free it with
 * cnn_load_report_free. */
typedef enum cnn_load_what {
  CNN_LOAD_LOADED = 0, /* the net's tensor, copied from the file */
  CNN_LOAD_NEW,        /* the net's tensor, not in the file: kept (newly initialised) */
  CNN_LOAD_SHAPE,      /* in both, another shape or dtype in the file: the net's kept */
  CNN_LOAD_UNUSED      /* the file's tensor, which the net has no tensor for */
} cnn_load_what;
typedef struct cnn_load_item {
  char name[128];
  cnn_load_what what;
  char detail[192];    /* shapes: "[10,1024]" (LOADED, NEW, UNUSED), or
                          "F32 [10,1024] in the file, [5,1024] in the model" (SHAPE) */
} cnn_load_item;
typedef struct cnn_load_report {
  int n_items;         /* the net's tensors in order, then the file's unused ones */
  cnn_load_item *items;
  int loaded, fresh, shape, unused; /* counts of each kind */
  size_t loaded_values;             /* floats copied */
} cnn_load_report;
cnn_status cnn_net_load_matching(cnn_net *net, const char *path, cnn_load_report *rep);
void cnn_load_report_free(cnn_load_report *rep);

/* Freezing for fine-tuning: the first n_sections cfg sections (after [net]; 0:
 * none) run forward only. Their parameters, batch-norm running statistics and
 * optimizer state stay bit-identical through training: the optimizer skips them
 * (no update, no weight decay, no momentum), their batch norm normalises with its
 * running statistics as in inference (Keras' trainable = False, detectron2's
 * FrozenBatchNorm) and updates none, and backward stops before them (no gradient
 * is computed for them or anything earlier). Dropout in them still drops. At
 * least one trainable parameter must remain. Takes effect for the next step
 * (built or not); cnn_net_frozen returns the count. */
cnn_status cnn_net_set_frozen(cnn_net *net, int n_sections);
int cnn_net_frozen(const cnn_net *net);
/* The cfg section (0-based, after [net]) of the layer ("conv2", "conv2.bn") or
 * tensor ("conv2.weight") named `name`; freezing "up to and including conv2" is
 * cnn_net_set_frozen(net, section + 1). */
cnn_status cnn_net_find_section(const cnn_net *net, const char *name, int *section);

const char *cnn_net_cfg_text(const cnn_net *net);

#ifdef __cplusplus
}
#endif
#endif
