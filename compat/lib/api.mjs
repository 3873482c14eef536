// Helpers for Weft's REST API from Node tests: JSON calls with a bearer token, signing up, and a
// workspace with one member per role (invited and accepted the way a real client does it).
//
// Owns: the HTTP plumbing and the setup of people and workspaces. Does not own any assertion about
// access rules: those live in the tests.

/**
 * `method path` on `server` with `token` as the bearer and `body` as JSON; the status and body.
 * @param {import('./weft.mjs').WeftServer} server
 */
export async function call (server, method, path, token, body) {
  const headers = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : null }
}

/** Calls and insists on `expected` as the status; returns the body. */
export async function ok (server, method, path, token, body, expected = 200) {
  const { status, body: answer } = await call(server, method, path, token, body)
  if (status !== expected) throw new Error(`${method} ${path}: ${status} ${JSON.stringify(answer)}`)
  return answer
}

/** Signs up `email`; returns `{ id, token }`. */
export async function signup (server, email) {
  const session = await ok(server, 'POST', '/api/auth/signup', null, { email, password: 'correct horse' }, 201)
  return { id: session.user.id, token: session.access_token }
}

/**
 * A workspace owned by a new account, with one new member for each role in `roles` (invited by
 * the owner, signed up, and accepted). Returns `{ ws, owner, members }`, `members` by role.
 */
export async function workspace (server, roles) {
  const owner = await signup(server, 'owner@example.com')
  const ws = (await ok(server, 'POST', '/api/workspaces', owner.token, { name: 'Compat' }, 201)).id
  const members = {}
  for (const role of roles) {
    const email = `${role}@example.com`
    const invite = await ok(server, 'POST', `/api/workspaces/${ws}/invites`, owner.token, { email, role }, 201)
    const person = await signup(server, email)
    await ok(server, 'POST', invite.accept_path, person.token)
    members[role] = person
  }
  return { ws, owner, members }
}

/** Creates a workspace document; returns it (its `id` opens it on every dialect). */
export async function createDoc (server, token, ws, body) {
  return ok(server, 'POST', `/api/workspaces/${ws}/docs`, token, body, 201)
}
