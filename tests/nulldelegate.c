/* A real external LiteRT delegate library for tests (tensorflow/lite/delegates/external/
   external_delegate_interface.h): it loads, claims no node, and fails on request, so the external-delegate
   path of bench.py is tested end to end without an accelerator.

   Options: fail_create=1 -> tflite_plugin_create_delegate reports an error and returns NULL;
            fail_prepare=1 -> the delegate's Prepare fails when it is applied to a graph.
   Built by tests/helpers.py::null_delegate_library with the system C compiler. The struct mirrors
   TfLiteDelegate (tensorflow/lite/core/c/common.h); only Prepare is ever called. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  int (*CopyToBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  void (*FreeBufferHandle)(void*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static int prepare_claims_nothing(void* context, TfLiteDelegate* delegate) {
  (void)context; (void)delegate;
  return 0; /* kTfLiteOk without ReplaceNodeSubsetsWithDelegateKernels: no node is delegated */
}

static int prepare_fails(void* context, TfLiteDelegate* delegate) {
  (void)context; (void)delegate;
  return 1; /* kTfLiteError */
}

static int enabled(char** keys, char** values, size_t n, const char* key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(keys[i], key) == 0 && strcmp(values[i], "1") == 0) return 1;
  return 0;
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report)(const char*)) {
  if (enabled(keys, values, n, "fail_create")) {
    report("nulldelegate: refusing to start (fail_create=1)");
    return NULL;
  }
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  if (delegate) delegate->Prepare = enabled(keys, values, n, "fail_prepare") ? prepare_fails : prepare_claims_nothing;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
