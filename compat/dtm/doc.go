// Package dtm proves the service's DTM-compatible endpoint with DTM's own
// Go client: its tests drive a real tracseq-tx with dtmcli v1.19, unchanged.
// It is a module of its own so that the service does not inherit DTM's
// dependencies.
package dtm
