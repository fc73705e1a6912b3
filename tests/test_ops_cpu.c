/* Every op of the `cpu` backend against `ref` (see tests/lib/opsuite.c for the
 * cases and the tolerance of each op). CNN_TEST_VERBOSE=1 prints every check. */
#include <stdlib.h>

#include "backend/backend.h"
#include "opsuite.h"
#include "testutil.h"

int main(void) {
  cnn_backend *cpu = NULL, *ref = NULL;
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cpu_create(&cpu));
  if (cpu && ref) {
    const char *v = getenv("CNN_TEST_VERBOSE");
    cnn_opsuite_run(cpu, ref, 1e-5, v && *v && *v != '0');
  }
  if (cpu) cpu->ops->destroy(cpu);
  if (ref) ref->ops->destroy(ref);
  return tu_finish("test_ops_cpu");
}
