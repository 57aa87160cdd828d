package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/memory"
)

// demo starts a service in memory and a participant whose /refuse answers
// 409; it returns their URLs and a function that stops them.
func demo() (serviceURL, participantURL string, stop func()) {
	coord, err := engine.New(memory.New(memory.Config{}), engine.Config{InstanceID: "example"})
	if err != nil {
		panic(err)
	}
	if err := coord.Start(context.Background()); err != nil {
		panic(err)
	}
	api, err := httpapi.NewServer(httpapi.Config{Coordinator: coord})
	if err != nil {
		panic(err)
	}
	svc := httptest.NewServer(api.Handler())
	busi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusConflict)
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	return svc.URL, busi.URL, func() {
		svc.Close()
		busi.Close()
		_ = coord.Stop(context.Background())
	}
}

// twoSteps is a saga whose second step calls path.
func twoSteps(participant, name, path string) client.Definition {
	call := func(p string) client.Request { return client.Request{Method: http.MethodPost, URL: participant + p} }
	comp := call("/undo")
	return client.Definition{Name: name, Steps: []client.Step{
		{Name: "reserve", Action: call("/reserve"), Compensation: &comp},
		{Name: "charge", Action: call(path), Compensation: &comp},
	}}
}

func ExampleClient_Submit() {
	serviceURL, participantURL, stop := demo()
	defer stop()
	ctx := context.Background()

	c, err := client.New(serviceURL)
	if err != nil {
		panic(err)
	}
	s, replayed, err := c.Submit(ctx, twoSteps(participantURL, "checkout", "/charge"), client.WithWait(10*time.Second))
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Status, s.CompletedSteps, "of", s.TotalSteps, "steps, replayed:", replayed)

	// The same definition under the same key is the same saga.
	def := twoSteps(participantURL, "checkout", "/charge")
	def.IdempotencyKey = s.IdempotencyKey
	again, replayed, _ := c.Submit(ctx, def)
	fmt.Println(again.ID == s.ID, "replayed:", replayed)

	refused, _, _ := c.Submit(ctx, twoSteps(participantURL, "refused", "/refuse"), client.WithWait(10*time.Second))
	fmt.Println(refused.Status)
	// Output:
	// Completed 2 of 2 steps, replayed: false
	// true replayed: true
	// Compensated
}

func ExampleClient_List() {
	serviceURL, participantURL, stop := demo()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(serviceURL)
	for range 5 {
		if _, _, err := c.Submit(ctx, twoSteps(participantURL, "batch", "/charge")); err != nil {
			panic(err)
		}
	}
	pages, sagas := 0, 0
	for page, err := range c.List(ctx, client.ListQuery{Name: "batch", Limit: 2}) {
		if err != nil {
			panic(err)
		}
		pages++
		sagas += len(page.Sagas)
	}
	fmt.Println(sagas, "sagas in", pages, "pages")
	// Output: 5 sagas in 3 pages
}

func ExampleClient_Events() {
	serviceURL, participantURL, stop := demo()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(serviceURL)
	s, _, _ := c.Submit(ctx, twoSteps(participantURL, "audited", "/charge"), client.WithWait(10*time.Second))
	events, err := c.Events(ctx, s.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(events[0].Type, "…", events[len(events)-1].Type)
	// Output: SagaCreated … SagaCompleted
}

func ExampleFieldOf() {
	serviceURL, _, stop := demo()
	defer stop()
	c, _ := client.New(serviceURL)
	def := client.Definition{Name: "bad", Steps: []client.Step{
		{Name: "a", Action: client.Request{Method: http.MethodPost, URL: "not a url"}},
	}}
	_, _, err := c.Submit(context.Background(), def)
	fmt.Println(client.FieldOf(err))
	// Output: steps[0].action.url
}

func ExampleClient_Cancel() {
	serviceURL, participantURL, stop := demo()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(serviceURL)
	_, err := c.Cancel(ctx, "0190f1c2-7a3b-7c4d-8e5f-0123456789ab")
	fmt.Println(client.IsNotFound(err))
	s, _, _ := c.Submit(ctx, twoSteps(participantURL, "done", "/charge"), client.WithWait(10*time.Second))
	_, err = c.Cancel(ctx, s.ID)
	var p *client.Problem
	if errors.As(err, &p) {
		fmt.Println(p.Status, p.Field)
	}
	// Output:
	// true
	// 409 status
}
