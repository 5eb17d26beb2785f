// One JS SDK client for the page, on the same origin as the page. With a Django login session
// (token mode) the API checks the CSRF token on writes; in the local mode it is simply ignored.
import { Client } from "@langchain/langgraph-sdk";

export function clientOptions(settings) {
  return {
    apiUrl: window.location.origin + settings.apiPrefix,
    defaultHeaders: { "X-CSRFToken": settings.csrfToken },
  };
}

export function makeClient(settings) {
  return new Client(clientOptions(settings));
}

/** A short readable reason from an SDK error (its HTTP status and the server's detail). */
export function describeError(error) {
  if (!error) return "";
  const status = error.status ?? error.response?.status;
  const message = error.message || String(error);
  return status ? `${status}: ${message}` : message;
}
