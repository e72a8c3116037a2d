{
  "targets": [
    {
      "target_name": "sendfile",
      "sources": ["sendfile.c", "sha256.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
