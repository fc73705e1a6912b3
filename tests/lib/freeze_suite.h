/* Freezing checks run on any backend (test_finetune: ref and cpu; test_gpu_finetune:
 * cuda): see freeze_suite.c. */
#ifndef CNN_FREEZE_SUITE_H
#define CNN_FREEZE_SUITE_H

/* the cfg of the suite's net (10 classes): sections conv+bn+relu, maxpool, conv,
 * connected 16, connected 10, softmax; SGD, Nesterov, weight decay 0.01 */
extern const char *fs_cfg;

/* run the freezing checks on backend `name` (CHECKs count failures) */
void fs_run(const char *backend);

#endif
