package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

// openAPIDoc is the part of the OpenAPI document the tests read.
type openAPIDoc struct {
	OpenAPI    string                                 `json:"openapi"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas    map[string]openAPISchema    `json:"schemas"`
		Parameters map[string]openAPIParameter `json:"parameters"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string             `json:"operationId"`
	Parameters  []openAPIParameter `json:"parameters"`
	Responses   map[string]any     `json:"responses"`
	Security    *[]any             `json:"security"`
}

type openAPIParameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type openAPISchema struct {
	Properties map[string]any `json:"properties"`
	Required   []string       `json:"required"`
}

var openAPIMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPICoversRoutes checks that every route the server registers is
// documented and that every documented operation is served by that route.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if slices.Contains(openAPIMethods, method) {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	var registered []string
	for _, rt := range routes() {
		registered = append(registered, rt.pattern())
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Errorf("documented operations\n  %v\nregistered routes\n  %v", documented, registered)
	}

	// Each documented operation reaches its route on the server.
	srv, err := NewServer(Config{Coordinator: &fakeCoordinator{}, Metrics: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, strings.ReplaceAll(path, "{id}", knownID), nil)
		if _, pattern := srv.mux.Handler(req); pattern != op {
			t.Errorf("%s is served by %q", op, pattern)
		}
	}
}

// TestOpenAPIParameters checks each operation's query parameters against
// the route table, and the id path parameter.
func TestOpenAPIParameters(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	for _, rt := range routes() {
		op, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			continue // TestOpenAPICoversRoutes reports it
		}
		var query, pathParams []string
		for _, p := range op.Parameters {
			if p.Ref != "" {
				name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/")
				if !ok {
					t.Fatalf("%s: parameter ref %q", rt.pattern(), p.Ref)
				}
				p, ok = doc.Components.Parameters[name]
				if !ok {
					t.Fatalf("%s: unknown parameter %q", rt.pattern(), name)
				}
			}
			switch p.In {
			case "query":
				query = append(query, p.Name)
			case "path":
				pathParams = append(pathParams, p.Name)
			}
		}
		slices.Sort(query)
		want := slices.Sorted(slices.Values(rt.query))
		if !slices.Equal(query, want) {
			t.Errorf("%s: documented query parameters %v, served %v", rt.pattern(), query, want)
		}
		wantPath := []string(nil)
		if strings.Contains(rt.path, "{id}") {
			wantPath = []string{"id"}
		}
		if !slices.Equal(pathParams, wantPath) {
			t.Errorf("%s: path parameters %v, want %v", rt.pattern(), pathParams, wantPath)
		}
	}
}

// TestOpenAPIResponses checks that the error statuses each kind of route
// can answer are documented, and that only /api/ routes need the token.
func TestOpenAPIResponses(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	for _, rt := range routes() {
		op, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			continue
		}
		var want []string
		if rt.api {
			want = append(want, "400", "401", "500", "503")
			if op.Security != nil {
				t.Errorf("%s: an API route opts out of the bearer token", rt.pattern())
			}
		} else if op.Security == nil || len(*op.Security) != 0 {
			t.Errorf("%s: an open route is not documented as open (security: [])", rt.pattern())
		}
		if strings.Contains(rt.path, "{id}") {
			want = append(want, "404")
		}
		if strings.HasPrefix(rt.path, "/api/v1/sagas/{id}/") && rt.method == http.MethodPost && !strings.HasSuffix(rt.path, "/hold") {
			want = append(want, "409")
		}
		if rt.pattern() == "POST /api/v1/sagas" {
			want = append(want, "200", "201", "403", "413", "415")
		}
		for _, code := range want {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s: response %s is not documented", rt.pattern(), code)
			}
		}
	}
}

// TestOpenAPIRefsResolve walks the document and resolves every $ref.
func TestOpenAPIRefsResolve(t *testing.T) {
	t.Parallel()
	var root any
	if err := json.Unmarshal(openAPIDocument, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if k == "$ref" {
					ref, _ := child.(string)
					if !resolves(root, ref) {
						t.Errorf("%s: $ref %q does not resolve", at, ref)
					}
					continue
				}
				walk(child, at+"/"+k)
			}
		case []any:
			for _, child := range v {
				walk(child, at+"[]")
			}
		}
	}
	walk(root, "#")
}

func resolves(root any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	cur := root
	for _, part := range strings.Split(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

// TestOpenAPISchemasMatchTypes holds each documented schema to the JSON
// fields of the Go type that is encoded or decoded with it.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	pairs := map[string]reflect.Type{
		"Definition":      reflect.TypeFor[saga.Definition](),
		"StepDefinition":  reflect.TypeFor[saga.StepDefinition](),
		"ParticipantCall": reflect.TypeFor[saga.Request](),
		"RetryPolicy":     reflect.TypeFor[saga.RetryPolicy](),
		"Saga":            reflect.TypeFor[SagaJSON](),
		"Step":            reflect.TypeFor[StepJSON](),
		"Compensation":    reflect.TypeFor[CompensationJSON](),
		"Event":           reflect.TypeFor[EventJSON](),
		"EventList":       reflect.TypeFor[EventsJSON](),
		"SagaList":        reflect.TypeFor[ListJSON](),
		"Statistics":      reflect.TypeFor[StatsJSON](),
		"Cleanup":         reflect.TypeFor[CleanupJSON](),
		"Health":          reflect.TypeFor[HealthJSON](),
		"Ready":           reflect.TypeFor[ReadyJSON](),
		"Database":        reflect.TypeFor[DatabaseJSON](),
		"Pool":            reflect.TypeFor[PoolJSON](),
		"Problem":         reflect.TypeFor[Problem](),
		"FieldError":      reflect.TypeFor[FieldError](),
		"OperatorRequest": reflect.TypeFor[OperatorRequestJSON](),
		"AuditTrail":      reflect.TypeFor[AuditJSON](),
		"AuditEvent":      reflect.TypeFor[AuditEventJSON](),
		"ChainBreak":      reflect.TypeFor[ChainBreakJSON](),
	}
	for name, typ := range pairs {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s is not documented", name)
			continue
		}
		var documented []string
		for p := range schema.Properties {
			documented = append(documented, p)
		}
		slices.Sort(documented)
		fields := jsonFields(typ)
		if !slices.Equal(documented, fields) {
			t.Errorf("schema %s has properties\n  %v\n%s has JSON fields\n  %v", name, documented, typ, fields)
		}
		for _, r := range schema.Required {
			if !slices.Contains(fields, r) {
				t.Errorf("schema %s requires %q, which %s lacks", name, r, typ)
			}
		}
	}

	// The enums are the root package's values.
	enums := map[string][]string{
		"SagaStatus":         stringsOf(saga.SagaStatuses),
		"StepStatus":         stringsOf(saga.StepStatuses),
		"CompensationStatus": stringsOf(saga.CompensationStatuses),
		"ControlAction":      append([]string{""}, stringsOf(saga.ControlActions)...),
	}
	var raw struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &raw); err != nil {
		t.Fatal(err)
	}
	for name, want := range enums {
		if got := raw.Components.Schemas[name].Enum; !slices.Equal(got, want) {
			t.Errorf("enum %s is %v, want %v", name, got, want)
		}
	}
}

// jsonFields returns the sorted JSON field names of a struct type.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for name := range memberTypes(typ) {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func stringsOf[S ~string](values []S) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
