package orders

// DecodeFast is decodeFast, for the tests of package orders_test.
var DecodeFast = decodeFast

// DecodeOptions are the JSON v2 decoder's options, for the same tests.
var DecodeOptions = decodeOptions
