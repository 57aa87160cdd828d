//go:build race

package e2e

// raceBuild is true when the tests run with the race detector: the service
// binary is then built with it too.
const raceBuild = true
