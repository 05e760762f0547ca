/* Loads a SavedModel through TensorFlow's C API (TF_LoadSessionFromSavedModel,
 * the loader TF Serving uses) and runs one signature on a batch.
 *
 * usage: run_saved_model EXPORT_DIR SPEC_FILE
 * SPEC_FILE lines (tensor names come from the signature def):
 *   input  OP_NAME INDEX DTYPE SHAPE DATA_FILE   DTYPE: float | int64 | string
 *     SHAPE: ROWS (a vector) or ROWSxCOLS (a matrix, e.g. a list feature)
 *   output OP_NAME INDEX
 * Numeric data files hold ROWS*COLS little-endian values (row-major); string
 * files hold as many records of (uint32 length, bytes). Each output is printed on stdout
 * as: OP_NAME:INDEX NUM_VALUES v1 v2 ...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

#define MAX_TENSORS 256

static void die(const char *what, TF_Status *status) {
  fprintf(stderr, "%s: %s\n", what, status ? TF_Message(status) : "");
  exit(1);
}

static char *read_file(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(*size > 0 ? *size : 1);
  if (*size > 0 && fread(buf, 1, *size, f) != (size_t)*size) { fprintf(stderr, "short read %s\n", path); exit(1); }
  fclose(f);
  return buf;
}

static TF_Tensor *make_tensor(const char *dtype, const char *shape, const char *path) {
  long size;
  char *data = read_file(path, &size);
  int64_t dims[2] = {0, 1};
  int rank = sscanf(shape, "%ldx%ld", (long *)&dims[0], (long *)&dims[1]);
  if (rank < 1 || dims[0] < 0 || dims[1] < 0) { fprintf(stderr, "bad shape %s\n", shape); exit(1); }
  int64_t count = dims[0] * dims[1];
  TF_Tensor *t = NULL;
  if (strcmp(dtype, "float") == 0 || strcmp(dtype, "int64") == 0) {
    int is_float = dtype[0] == 'f';
    size_t width = is_float ? sizeof(float) : sizeof(int64_t);
    if ((size_t)size != width * count) { fprintf(stderr, "%s: expected %ld bytes\n", path, (long)(width * count)); exit(1); }
    t = TF_AllocateTensor(is_float ? TF_FLOAT : TF_INT64, dims, rank, size);
    memcpy(TF_TensorData(t), data, size);
  } else if (strcmp(dtype, "string") == 0) {
    t = TF_AllocateTensor(TF_STRING, dims, rank, sizeof(TF_TString) * count);
    TF_TString *out = (TF_TString *)TF_TensorData(t);
    long pos = 0;
    for (int64_t i = 0; i < count; ++i) {
      uint32_t len;
      if (pos + 4 > size) { fprintf(stderr, "%s: truncated\n", path); exit(1); }
      memcpy(&len, data + pos, 4);
      pos += 4;
      if (pos + len > size) { fprintf(stderr, "%s: truncated\n", path); exit(1); }
      TF_StringInit(&out[i]);
      TF_StringCopy(&out[i], data + pos, len);
      pos += len;
    }
  } else {
    fprintf(stderr, "unknown dtype %s\n", dtype);
    exit(1);
  }
  free(data);
  return t;
}

static void print_tensor(const char *name, int index, TF_Tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < TF_NumDims(t); ++d) n *= TF_Dim(t, d);
  printf("%s:%d %ld", name, index, (long)n);
  for (int64_t i = 0; i < n; ++i) {
    switch (TF_TensorType(t)) {
      case TF_FLOAT: printf(" %.9g", ((float *)TF_TensorData(t))[i]); break;
      case TF_DOUBLE: printf(" %.17g", ((double *)TF_TensorData(t))[i]); break;
      case TF_INT32: printf(" %d", ((int32_t *)TF_TensorData(t))[i]); break;
      case TF_INT64: printf(" %ld", (long)((int64_t *)TF_TensorData(t))[i]); break;
      default: fprintf(stderr, "unsupported output dtype %d\n", TF_TensorType(t)); exit(1);
    }
  }
  printf("\n");
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s EXPORT_DIR SPEC_FILE\n", argv[0]); return 2; }
  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, argv[1], tags, 1, graph, NULL, status);
  if (TF_GetCode(status) != TF_OK) die("TF_LoadSessionFromSavedModel", status);

  TF_Output inputs[MAX_TENSORS], outputs[MAX_TENSORS];
  TF_Tensor *input_values[MAX_TENSORS], *output_values[MAX_TENSORS];
  char *output_names[MAX_TENSORS];
  int n_in = 0, n_out = 0;
  FILE *spec = fopen(argv[2], "r");
  if (!spec) { fprintf(stderr, "cannot open %s\n", argv[2]); return 1; }
  char kind[16], name[512], dtype[16], shape[64], path[4096];
  int index;
  while (fscanf(spec, "%15s %511s %d", kind, name, &index) == 3) {
    TF_Operation *op = TF_GraphOperationByName(graph, name);
    if (!op) { fprintf(stderr, "no operation named %s in the graph\n", name); return 1; }
    if (strcmp(kind, "input") == 0) {
      if (fscanf(spec, "%15s %63s %4095s", dtype, shape, path) != 3 || n_in >= MAX_TENSORS) return 1;
      inputs[n_in] = (TF_Output){op, index};
      input_values[n_in++] = make_tensor(dtype, shape, path);
    } else {
      if (n_out >= MAX_TENSORS) return 1;
      outputs[n_out] = (TF_Output){op, index};
      output_names[n_out++] = strdup(name);
    }
  }
  fclose(spec);

  TF_SessionRun(session, NULL, inputs, input_values, n_in, outputs, output_values, n_out,
                NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) die("TF_SessionRun", status);
  for (int i = 0; i < n_out; ++i) {
    print_tensor(output_names[i], outputs[i].index, output_values[i]);
    TF_DeleteTensor(output_values[i]);
    free(output_names[i]);
  }
  for (int i = 0; i < n_in; ++i) TF_DeleteTensor(input_values[i]);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
