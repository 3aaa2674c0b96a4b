package ordersdb

// NewerSQL exposes newerSQL to the tests of package ordersdb_test.
var NewerSQL = newerSQL
