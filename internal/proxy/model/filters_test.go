package model_test

// The listener converter accepts the http filters registered with it; the
// proxy registers every filter it implements through this import, and so
// do these tests.
import _ "trellis.dev/trellis/internal/proxy/filters"
