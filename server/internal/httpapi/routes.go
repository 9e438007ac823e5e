package httpapi

// CatchAll is the pattern of the route that answers every unknown path
// with a JSON 404; it is not an API route.
const CatchAll = "/"

// Routes returns the patterns the API serves, as registered with
// http.ServeMux ("GET /sessions/{id}"), CatchAll included. The route
// coverage test compares them with the OpenAPI document.
func (a *API) Routes() []string { return append([]string(nil), a.routes...) }
