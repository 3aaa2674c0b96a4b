package ingest

// SetCombineLanes turns the combiner of the writer lanes on or off for the flows
// created afterwards, and returns the previous setting (benchmarks compare).
func SetCombineLanes(on bool) bool {
	prev := combineLanes
	combineLanes = on
	return prev
}
