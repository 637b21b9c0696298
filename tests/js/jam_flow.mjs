// jmap-jam (npm, a third-party JMAP client) against a running mailaccess
// server: session, Mailbox/get, Email/query + Email/get (one request with a
// result reference), Email/set (a keyword patch), Email/get again.  Prints one
// JSON object on stdout for tests/test_jmap_clients.py to check.
// Usage: node jam_flow.mjs SESSION_URL BEARER_TOKEN
import JamClient from "jmap-jam";

const [sessionUrl, bearerToken] = process.argv.slice(2);
const jam = new JamClient({ sessionUrl, bearerToken });
const out = {};

const session = await jam.session;
out.username = session.username;
out.apiUrl = session.apiUrl;
const accountId = await jam.getPrimaryAccount();
out.accountId = accountId;

const [mailboxes] = await jam.api.Mailbox.get({ accountId, ids: null });
const inbox = mailboxes.list.find((m) => m.role === "inbox");
out.mailboxes = mailboxes.list.map((m) => [m.role, m.name, m.totalEmails]);

const [{ query, emails }] = await jam.requestMany((t) => {
  const query = t.Email.query({
    accountId,
    filter: { inMailbox: inbox.id },
    sort: [{ property: "receivedAt", isAscending: false }],
    limit: 50,
  });
  const emails = t.Email.get({
    accountId,
    ids: query.$ref("/ids"),
    properties: ["id", "subject", "keywords", "from", "receivedAt", "preview"],
  });
  return { query, emails };
});
out.queryIds = query.ids;
out.subjects = emails.list.map((e) => e.subject);

const target = emails.list[0].id;
const [set] = await jam.api.Email.set({
  accountId,
  update: { [target]: { "keywords/$flagged": true } },
});
out.updated = Object.keys(set.updated || {});
out.notUpdated = set.notUpdated || null;

const [after] = await jam.api.Email.get({ accountId, ids: [target], properties: ["keywords"] });
out.keywordsAfter = after.list[0].keywords;

process.stdout.write(JSON.stringify(out) + "\n");
