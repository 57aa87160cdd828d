// Package dtmapi serves a DTM-compatible saga endpoint under /api/dtmsvr/,
// so that clients written for DTM v1.19 (its Go client dtmcli, or its HTTP
// protocol) and DTM-style participants move to this service by changing one
// URL.
//
// A DTM saga is an ordinary saga inside: named "dtm", with the gid kept as
// its idempotency key ("dtm:" + gid) and as its transaction id (a UUID
// derived from the gid), its branches called in DTM's participant protocol
// (saga.ProtocolDTM). It shows in /api/v1/sagas, the metrics and the audit
// trail like any other. docs/dtm.md lists the routes, the mapping of DTM's
// options onto a saga definition, and where this endpoint behaves better
// than DTM.
package dtmapi
