// Package console is the web console of the transaction service, served
// under /ui/ by the binary: the sagas with live counts by status, filters
// and keyset pages; one saga with its steps on a timeline, their input,
// output and errors, its audit trail and the operator buttons its status
// allows; statistics as SVG charts; and the health of the store and the
// instances.
//
// Pages are rendered on the server with html/template (which escapes every
// value: a saga named <script> shows as text) and embedded in the binary
// with the little script and style sheet they load (go:embed); no Node
// toolchain and no CDN. Each page's content is also served alone under
// /ui/part/…, which the script fetches again every few seconds, so that a
// page refreshes itself and keeps its filters (they are in its URL).
//
// When the API requires tokens (Config.Authorize set), the pages carry no
// data: the script asks the person for a token once, keeps it in the
// tab's sessionStorage, and sends it as the bearer token with every fetch
// of a part (which Authorize checks) and every operator action (which goes
// to the REST API, /api/v1/sagas/{id}/{action}). Without a token nothing
// but the empty page is served. The Content-Security-Policy allows only the
// console's own script and style: no inline script anywhere.
package console
