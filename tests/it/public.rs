//! The public endpoints under /public/ through the real app: the banner (JSON, HTML, the
//! embedding script), status.json and the Atom feed; caching (ETag, 304), CORS, and the
//! escaping of untrusted text (alert labels, operator text) in every format.

use crate::common;

use common::{
    TestApp, alert, payload, pending_draft, publish_pending, publish_request, spawn_app_with_tables,
};
use quick_xml::events::Event;
use reqwest::Method;
use samsa_relay::notice::NoticeKind;
use samsa_relay::storage::{DraftFields, PublishedNoticeRecord};
use serde_json::{Value, json};

const LOGIN_PAGE_ORIGIN: &str = "https://samsa.example.org";

/// A banner allowed on the login page's origin and a news channel on the feed.
const PUBLIC_TABLES: &str = r#"
[channels.banner]
content = "banner"
transport = "banner"
allowed_origins = ["https://samsa.example.org"]

[channels.news]
content = "website"
transport = "feed"

[plan]
level_1 = ["banner", "news"]
level_2 = ["banner", "news"]
level_3 = ["banner", "news"]
"#;

const PATHS: [&str; 5] = [
    "/public/banner.json",
    "/public/banner.html",
    "/public/banner.js",
    "/public/status.json",
    "/public/feed.atom",
];

fn uddevalla(status: &str) -> Value {
    alert(
        "a1",
        status,
        json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-uddevalla"}),
        "2026-11-28T04:10:00Z",
    )
}

fn trollhattan(status: &str) -> Value {
    alert(
        "t1",
        status,
        json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-trollhattan"}),
        "2026-11-28T04:20:00Z",
    )
}

async fn post_firing(app: &TestApp, alerts: Vec<Value>) {
    let body = payload("firing", alerts);
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
}

async fn get_text(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, String) {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let headers = response.headers().clone();
    (headers, response.text().await.expect("a text body"))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let (headers, text) = get_text(app, path).await;
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_str(&text).expect("JSON")
}

async fn get_feed(app: &TestApp) -> (String, Feed) {
    let (headers, text) = get_text(app, "/public/feed.atom").await;
    assert_eq!(
        headers["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let feed = parse_atom(&text);
    (text, feed)
}

async fn newest_notice(app: &TestApp) -> PublishedNoticeRecord {
    app.state
        .storage
        .published_notices(None, 1)
        .await
        .unwrap()
        .remove(0)
}

fn time(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a time"))
        .parse()
        .expect("RFC 3339")
}

// ---------------------------------------------------------------------------------------
// A small Atom reader over quick-xml: enough to check the structure and read the text
// back unescaped.

#[derive(Debug, Default)]
struct Feed {
    id: String,
    title: String,
    updated: String,
    self_link: String,
    author_name: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    id: String,
    title: String,
    updated: String,
    published: String,
    summary: String,
    content: String,
    content_type: String,
    link: String,
}

fn attribute(element: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    element
        .attributes()
        .map(|attribute| attribute.expect("a well-formed attribute"))
        .find(|attribute| attribute.key.as_ref() == name.as_bytes())
        .map(|attribute| {
            attribute
                .unescape_value()
                .expect("an attribute value")
                .into_owned()
        })
}

fn parse_atom(xml: &str) -> Feed {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut feed = Feed::default();
    let mut entry = Entry::default();
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|error| panic!("the feed is not well-formed XML: {error}\n{xml}"));
        let is_start = matches!(event, Event::Start(_));
        match event {
            Event::Start(element) | Event::Empty(element) if element.name().as_ref() == b"link" => {
                let rel = attribute(&element, "rel").unwrap_or_default();
                let href = attribute(&element, "href").expect("a link has an href");
                match (path.last().map(String::as_str), rel.as_str()) {
                    (Some("feed"), "self") => feed.self_link = href,
                    (Some("entry"), "alternate") => entry.link = href,
                    _ => {}
                }
                if is_start {
                    path.push("link".to_owned());
                }
            }
            Event::Start(element) => {
                let name = String::from_utf8(element.name().as_ref().to_vec()).unwrap();
                if path.is_empty() {
                    assert_eq!(name, "feed", "the root element");
                    assert_eq!(
                        attribute(&element, "xmlns").as_deref(),
                        Some("http://www.w3.org/2005/Atom")
                    );
                }
                if name == "content" {
                    entry.content_type = attribute(&element, "type").unwrap_or_default();
                }
                path.push(name);
                text.clear();
            }
            Event::Text(content) => text.push_str(&content.decode().expect("UTF-8 text")),
            Event::GeneralRef(reference) => match reference.resolve_char_ref().unwrap() {
                Some(character) => text.push(character),
                None => {
                    let name = reference.decode().unwrap();
                    let reference_text = format!("&{name};");
                    let resolved = quick_xml::escape::unescape(&reference_text)
                        .unwrap_or_else(|_| panic!("unknown entity {reference_text}"));
                    text.push_str(&resolved);
                }
            },
            Event::CData(content) => text.push_str(&content.decode().unwrap()),
            Event::End(_) => {
                let name = path.pop().expect("an open element");
                let parent = path.last().map(String::as_str);
                let value = std::mem::take(&mut text);
                match (parent, name.as_str()) {
                    (Some("feed"), "id") => feed.id = value,
                    (Some("feed"), "title") => feed.title = value,
                    (Some("feed"), "updated") => feed.updated = value,
                    (Some("author"), "name") if path.len() == 2 => feed.author_name = value,
                    (Some("entry"), "id") => entry.id = value,
                    (Some("entry"), "title") => entry.title = value,
                    (Some("entry"), "updated") => entry.updated = value,
                    (Some("entry"), "published") => entry.published = value,
                    (Some("entry"), "summary") => entry.summary = value,
                    (Some("entry"), "content") => entry.content = value,
                    (Some("feed"), "entry") => feed.entries.push(std::mem::take(&mut entry)),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(path.is_empty(), "unclosed elements: {path:?}");
    feed
}

/// What RFC 4287 requires of a feed and each entry.
fn assert_valid_atom(feed: &Feed) {
    assert!(!feed.id.is_empty(), "feed id");
    assert_eq!(feed.title, "Driftinformation SAMSA");
    assert!(
        feed.updated.parse::<jiff::Timestamp>().is_ok(),
        "feed updated"
    );
    assert_eq!(feed.self_link, "http://127.0.0.1:9095/public/feed.atom");
    assert!(!feed.author_name.is_empty(), "feed author");
    for entry in &feed.entries {
        assert!(entry.id.starts_with("tag:127.0.0.1,"), "{}", entry.id);
        assert!(!entry.title.is_empty());
        assert!(entry.updated.parse::<jiff::Timestamp>().is_ok());
        assert!(entry.published.parse::<jiff::Timestamp>().is_ok());
        assert_eq!(entry.content_type, "text");
        assert!(!entry.content.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn the_banner_shows_an_open_incident_and_goes_away_with_the_resolution() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;

    assert_eq!(
        get_json(&app, "/public/banner.json").await,
        json!({"active": false})
    );
    let (headers, html) = get_text(&app, "/public/banner.html").await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(html, "");
    assert_eq!(
        get_json(&app, "/public/status.json").await,
        json!({"status": "ok", "maintenance": []})
    );
    let (_, feed) = get_feed(&app).await;
    assert_valid_atom(&feed);
    assert!(feed.entries.is_empty());
    let etag_before = app.get("/public/banner.json").await.headers()["etag"].clone();

    post_firing(&app, vec![uddevalla("firing")]).await;
    let first = publish_pending(&app, 1, NoticeKind::Initial, &["banner", "news"]).await;
    let notice = newest_notice(&app).await;
    assert_eq!(notice.notice_id, first.notice_id);
    let text = notice.rendered.banner_text.clone();
    assert!(text.contains("Uddevalla"), "{text}");

    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], true);
    assert_eq!(banner["incident_id"], 1);
    assert_eq!(banner["kind"], "initial");
    assert_eq!(banner["level"], 1);
    assert_eq!(banner["text"], text.as_str());
    assert_eq!(time(&banner["published_at"]), notice.published_at);
    assert_eq!(time(&banner["updated_at"]), notice.published_at);
    let etag_open = app.get("/public/banner.json").await.headers()["etag"].clone();
    assert_ne!(etag_before, etag_open, "a new banner has a new ETag");

    let (_, html) = get_text(&app, "/public/banner.html").await;
    assert!(
        html.starts_with("<div class=\"samsa-relay-banner\" role=\"alert\" lang=\"sv\">"),
        "{html}"
    );
    assert!(html.trim_end().ends_with("</div>"), "{html}");
    assert!(html.contains("Uddevalla"), "{html}");

    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "disruption");
    assert_eq!(status["incident_id"], 1);
    assert_eq!(status["level"], 1);
    assert_eq!(status["text"], text.as_str());
    assert_eq!(time(&status["since"]), notice.published_at);

    let (_, feed) = get_feed(&app).await;
    assert_valid_atom(&feed);
    assert_eq!(feed.entries.len(), 1);
    let entry = &feed.entries[0];
    assert_eq!(entry.title, notice.rendered.website_title);
    assert_eq!(entry.content, notice.rendered.website_body);
    assert_eq!(entry.summary, notice.rendered.banner_text);
    assert_eq!(entry.link, "http://127.0.0.1:9095/public/feedback/1");
    // Atom times are to the second.
    let published_second = notice
        .published_at
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(entry.published, published_second);
    assert_eq!(entry.updated, published_second);

    // The outage grows: the update replaces the banner's text, not its first time.
    post_firing(&app, vec![uddevalla("firing"), trollhattan("firing")]).await;
    publish_pending(&app, 1, NoticeKind::Update, &["banner", "news"]).await;
    let update = newest_notice(&app).await;
    assert!(update.rendered.banner_text.contains("Trollhättan"));
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["kind"], "update");
    assert_eq!(banner["text"], update.rendered.banner_text.as_str());
    assert_eq!(time(&banner["published_at"]), notice.published_at);
    assert_eq!(time(&banner["updated_at"]), update.published_at);
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(time(&status["since"]), notice.published_at);
    assert_eq!(status["text"], update.rendered.banner_text.as_str());

    // The outage ends: Alertmanager resolves, the operator publishes the resolution.
    let resolved = payload(
        "resolved",
        vec![uddevalla("resolved"), trollhattan("resolved")],
    );
    assert_eq!(app.post_webhook(resolved.to_string()).await.status(), 200);
    publish_pending(&app, 1, NoticeKind::Resolved, &["banner", "news"]).await;
    let resolution = newest_notice(&app).await;

    // The all-clear stays for banner.all_clear_for (2 hours by default), announced
    // politely, then the banner turns inactive.
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], true, "{banner}");
    assert_eq!(banner["kind"], "resolved");
    assert_eq!(banner["text"], resolution.rendered.banner_text.as_str());
    assert!(
        resolution.rendered.banner_text.contains("är åtgärdad"),
        "{}",
        resolution.rendered.banner_text
    );
    assert_eq!(
        time(&banner["until"]),
        resolution.published_at + jiff::SignedDuration::from_hours(2)
    );
    assert!(banner.get("next_update").is_none());
    let (_, html) = get_text(&app, "/public/banner.html").await;
    assert!(
        html.starts_with("<div class=\"samsa-relay-banner\" role=\"status\" lang=\"sv\">"),
        "{html}"
    );
    assert!(
        html.contains("Lämna synpunkter inför uppföljningen"),
        "{html}"
    );
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "resolved");
    let (_, feed) = get_feed(&app).await;
    assert_valid_atom(&feed);
    assert_eq!(feed.entries.len(), 3, "newest first");
    assert_eq!(feed.entries[0].title, resolution.rendered.website_title);
    assert!(feed.entries[0].title.starts_with("Åtgärdat"));
    assert_eq!(feed.entries[1].title, update.rendered.website_title);
    assert_eq!(feed.entries[2].id, entry.id, "an entry keeps its id");
    let ids: std::collections::BTreeSet<&str> =
        feed.entries.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "every entry has its own id");
    assert_eq!(
        feed.updated.parse::<jiff::Timestamp>().unwrap(),
        feed.entries[0].updated.parse::<jiff::Timestamp>().unwrap()
    );
}

#[tokio::test]
async fn every_public_answer_has_a_strong_etag_and_answers_304() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;
    post_firing(&app, vec![uddevalla("firing")]).await;
    publish_pending(&app, 1, NoticeKind::Initial, &["banner", "news"]).await;

    for path in PATHS {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
            "{path}: {etag}"
        );
        assert_eq!(headers["cache-control"], "public, max-age=30", "{path}");
        assert_eq!(headers["vary"], "Origin", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(!body.is_empty(), "{path}");

        // The same content, asked again: the same ETag.
        let again = app.get(path).await;
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag, "{path}");

        let cached = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304, "{path}");
        assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(cached.headers()["cache-control"], "public, max-age=30");
        assert!(cached.bytes().await.unwrap().is_empty());

        let listed = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", format!("\"older\", W/{etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 304, "{path}: a list with a weak match");

        let stale = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", "\"something-older\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
        assert_eq!(stale.bytes().await.unwrap(), body);
    }
}

#[tokio::test]
async fn cors_echoes_only_the_allowed_origins_and_answers_preflights() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;

    for path in PATHS {
        let url = format!("{}{path}", app.address);
        let allowed = app
            .client
            .get(&url)
            .header("origin", LOGIN_PAGE_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), 200);
        assert_eq!(
            allowed.headers()["access-control-allow-origin"],
            LOGIN_PAGE_ORIGIN,
            "{path}"
        );
        assert_eq!(allowed.headers()["vary"], "Origin");

        for refused_origin in [
            "https://evil.example",
            "https://samsa.example.org.evil.example",
            "http://samsa.example.org",
            "null",
        ] {
            let refused = app
                .client
                .get(&url)
                .header("origin", refused_origin)
                .send()
                .await
                .unwrap();
            assert_eq!(
                refused.status(),
                200,
                "the answer is public, only not shared"
            );
            assert!(
                refused
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none(),
                "{path} shared with {refused_origin}"
            );
            assert_eq!(refused.headers()["vary"], "Origin");
        }

        let no_origin = app.get(path).await;
        assert!(
            no_origin
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );

        let preflight = app
            .client
            .request(Method::OPTIONS, &url)
            .header("origin", LOGIN_PAGE_ORIGIN)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "if-none-match")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{path}");
        let headers = preflight.headers();
        assert_eq!(headers["access-control-allow-origin"], LOGIN_PAGE_ORIGIN);
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("GET"), "{methods}");
        let allowed_headers = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(allowed_headers.contains("if-none-match"));
        assert!(headers["vary"].to_str().unwrap().contains("Origin"));

        let refused_preflight = app
            .client
            .request(Method::OPTIONS, &url)
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(
            refused_preflight
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        assert!(
            refused_preflight
                .headers()
                .get("access-control-allow-methods")
                .is_none()
        );
    }
}

#[tokio::test]
async fn hostile_text_is_escaped_in_html_atom_and_json() {
    // The shipped banner says only times and scope; a site's own banner template may
    // carry the operator's text too, so this one does.
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("banner.txt"),
        "{% if additional_information %}{{ additional_information }} {% endif %}\
         Driftstörning i {{ service_name }}: användare inom {{ scope.within }} saknar åtkomst.\n",
    )
    .unwrap();
    let app = spawn_app_with_tables(&format!(
        "{PUBLIC_TABLES}\n[notices]\ntemplates_dir = \"{}\"\n",
        templates.path().display()
    ))
    .await;
    let hostile_actor = "<script>alert(\"x\")</script>&amp;";
    post_firing(
        &app,
        vec![alert(
            "h1",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": hostile_actor}),
            "2026-11-28T04:10:00Z",
        )],
    )
    .await;

    // The operator adds text of their own, just as hostile.
    let hostile_operator_text = "<img src=x onerror=\"alert('y')\"> & ]]> </content></entry>";
    let (draft_id, _, _) = pending_draft(&app, 1, NoticeKind::Initial).await;
    let version = samsa_relay::publishing::revise_draft(
        &app.state.storage,
        &app.state.renderer,
        draft_id,
        &DraftFields {
            additional_information: Some(hostile_operator_text.to_owned()),
            ..DraftFields::default()
        },
        "operatör@example.org",
    )
    .await
    .expect("the operator's version is stored");
    let (_, latest, level) = pending_draft(&app, 1, NoticeKind::Initial).await;
    assert_eq!(latest, version);
    app.state
        .publisher
        .publish(&publish_request(
            draft_id,
            version,
            level,
            &["banner", "news"],
        ))
        .await
        .expect("published");
    let notice = newest_notice(&app).await;
    let banner_text = notice.rendered.banner_text.clone();
    assert!(
        banner_text.contains(hostile_operator_text),
        "the operator's text reaches the banner: {banner_text}"
    );
    let website_body = &notice.rendered.website_body;
    assert!(
        website_body.contains(hostile_actor) && website_body.contains(hostile_operator_text),
        "the label and the operator's text reach the news: {website_body}"
    );

    // JSON: the same text back, whatever it holds.
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["text"], banner_text.as_str());
    assert_eq!(
        get_json(&app, "/public/status.json").await["text"],
        banner_text.as_str()
    );

    // HTML: one element, the text escaped.
    let (_, html) = get_text(&app, "/public/banner.html").await;
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains(
            "&lt;img src=x onerror=&quot;alert(&#39;y&#39;)&quot;&gt; &amp; ]]&gt; &lt;/content&gt;&lt;/entry&gt;"
        ),
        "{html}"
    );
    let tags: Vec<&str> = html
        .split('<')
        .skip(1)
        .map(|tag| tag.split([' ', '>']).next().unwrap_or(""))
        .collect();
    assert!(
        tags.iter()
            .all(|tag| ["div", "/div", "p", "/p", "strong", "/strong", "a", "/a"].contains(tag)),
        "only the banner's own tags: {html}"
    );

    // Atom: well-formed, and the text reads back exactly.
    let (xml, feed) = get_feed(&app).await;
    assert!(!xml.contains("<script"), "{xml}");
    assert!(!xml.contains("<img"), "{xml}");
    assert_valid_atom(&feed);
    assert_eq!(feed.entries.len(), 1);
    assert_eq!(feed.entries[0].title, notice.rendered.website_title);
    assert_eq!(feed.entries[0].content, notice.rendered.website_body);
    assert_eq!(feed.entries[0].summary, banner_text);
}

#[tokio::test]
async fn banner_js_reads_banner_json_from_its_own_origin_and_sets_text_only() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;
    let (headers, script) = get_text(&app, "/public/banner.js").await;
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");

    // Where it reads from: banner.json next to the script itself.
    assert!(script.contains("document.currentScript"));
    assert!(script.contains("new URL(\"banner.json\", scriptUrl)"));
    assert!(script.contains("searchParams.get(\"ovning\") === \"1\""));
    // What it builds: an accessible, Swedish banner at the top of the page.
    for needed in [
        "samsa-relay-banner",
        "\"role\", calm ? \"status\" : \"alert\"",
        "\"lang\", \"sv\"",
        "insertBefore(element, document.body.firstChild)",
        "data.active === true",
        "60000",
        "credentials: \"omit\"",
    ] {
        assert!(script.contains(needed), "banner.js lacks {needed}");
    }
    // How the text gets in: textContent, never parsed as HTML.
    assert!(script.contains("element.textContent = text"));
    assert!(script.contains("link.textContent ="));
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
    ] {
        assert!(!script.contains(forbidden), "banner.js uses {forbidden}");
    }
    // No dependency: nothing else is loaded.
    assert!(!script.contains("import "));
    assert!(!script.contains("createElement(\"script\")"));
    assert_eq!(script.matches("fetch(").count(), 1);
}

#[tokio::test]
async fn the_feed_holds_only_notices_of_feed_channels() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;
    post_firing(&app, vec![uddevalla("firing")]).await;
    // Published on the banner only: shown there, not in the feed.
    publish_pending(&app, 1, NoticeKind::Initial, &["banner"]).await;
    assert_eq!(get_json(&app, "/public/banner.json").await["active"], true);
    let (_, feed) = get_feed(&app).await;
    assert!(feed.entries.is_empty(), "{feed:?}");
}

#[tokio::test]
async fn banner_html_may_be_framed_only_by_the_allowed_origins() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;
    let response = app
        .client
        .get(format!("{}/public/banner.html", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        policy,
        format!(
            "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {LOGIN_PAGE_ORIGIN}"
        )
    );
    // A 304 carries the same policy.
    let etag = response.headers()["etag"].clone();
    let not_modified = app
        .client
        .get(format!("{}/public/banner.html", app.address))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["content-security-policy"], &policy);
    app.stop().await;

    // Without allowed origins any login page may frame it and read every public answer.
    let app = spawn_app_with_tables(
        "[channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\n\n[plan]\nlevel_1 = [\"banner\"]\nlevel_2 = [\"banner\"]\nlevel_3 = [\"banner\"]\n",
    )
    .await;
    let (headers, _) = get_text(&app, "/public/banner.html").await;
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .ends_with("frame-ancestors *")
    );
    for path in PATHS {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .header("origin", "https://any-login-page.example")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}: no credentials, so shared with any origin"
        );
    }
    assert!(
        headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    app.stop().await;
}

#[tokio::test]
async fn under_tls_every_response_carries_hsts() {
    let folder = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate_file = folder.path().join("relay.crt");
    let key_file = folder.path().join("relay.key");
    std::fs::write(&certificate_file, certified.cert.pem()).unwrap();
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
    let server_extra = format!(
        "tls_certificate_file = {:?}\ntls_key_file = {:?}",
        certificate_file.display().to_string(),
        key_file.display().to_string()
    );
    let app = common::spawn_app_with(&server_extra, "", "").await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    for (path, status) in [
        ("/healthz", 200),
        ("/public/banner.html", 200),
        ("/public/feedback/1", 404),
        ("/ops/static/style.css", 200),
        ("/no/such/page", 404),
    ] {
        let response = client
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_banner_tells_the_next_update_information_backup_routine_and_feedback_and_hides_drills()
{
    let tables = PUBLIC_TABLES.replace(
        "transport = \"banner\"\n",
        "transport = \"banner\"\ndrill = true\n",
    );
    let app = spawn_app_with_tables(&format!("{tables}\n[banner]\nall_clear_for = \"0s\"\n")).await;
    post_firing(&app, vec![uddevalla("firing")]).await;
    let (draft_id, _, _) = pending_draft(&app, 1, NoticeKind::Initial).await;
    let next_update: jiff::Timestamp = "2026-11-28T09:00:00Z".parse().unwrap();
    let version = samsa_relay::publishing::revise_draft(
        &app.state.storage,
        &app.state.renderer,
        draft_id,
        &DraftFields {
            level: Some(samsa_relay::classify::Level::Two),
            expected_resolution: None,
            next_update: Some(next_update),
            additional_information: Some(
                "Använd reservrutinen på papper.\nRing supporten vid frågor.".to_owned(),
            ),
        },
        "Operatör",
    )
    .await
    .unwrap();
    app.state
        .publisher
        .publish(&publish_request(
            draft_id,
            version,
            samsa_relay::classify::Level::Two,
            &["banner", "news"],
        ))
        .await
        .unwrap();
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["drill"], false);
    assert_eq!(time(&banner["next_update"]), next_update);
    assert_eq!(
        banner["additional_information"],
        "Använd reservrutinen på papper. Ring supporten vid frågor."
    );
    assert_eq!(
        banner["lines"],
        json!([
            "Nästa uppdatering: 28 november 2026 kl. 10:00.",
            "Övrig information: Använd reservrutinen på papper. Ring supporten vid frågor.",
            "Reservrutin: berörda verksamheter kan behöva gå över till reservrutin. Beslut fattas på delregional nivå."
        ])
    );
    assert_eq!(
        banner["feedback_url"],
        "http://127.0.0.1:9095/public/feedback/1"
    );
    let (_, html) = get_text(&app, "/public/banner.html").await;
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(
        html.contains("<p>Nästa uppdatering: 28 november 2026 kl. 10:00.</p>"),
        "{html}"
    );
    assert!(html.contains(
        "<a href=\"http://127.0.0.1:9095/public/feedback/1\" target=\"_blank\" rel=\"noopener\">Lämna synpunkter eller rapportera problem</a>"
    ), "{html}");

    // The resolution with all_clear_for = 0s: inactive at once.
    let resolved = payload("resolved", vec![uddevalla("resolved")]);
    assert_eq!(app.post_webhook(resolved.to_string()).await.status(), 200);
    publish_pending(&app, 1, NoticeKind::Resolved, &["banner", "news"]).await;
    assert_eq!(
        get_json(&app, "/public/banner.json").await,
        json!({"active": false})
    );

    // A drill: not on the live banner, only where asked for, and announced politely.
    let scopes = [samsa_relay::classify::AlertScope::Everything];
    let (drill_id, drill_draft) = samsa_relay::publishing::start_drill(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        &scopes,
        "Operatör",
    )
    .await
    .unwrap();
    let drill_version = app.state.storage.drafts(drill_id).await.unwrap()[0]
        .versions
        .len() as i64;
    let level = pending_draft(&app, drill_id, NoticeKind::Initial).await.2;
    app.state
        .publisher
        .publish(&publish_request(
            drill_draft,
            drill_version,
            level,
            &["banner"],
        ))
        .await
        .unwrap();
    assert_eq!(
        get_json(&app, "/public/banner.json").await,
        json!({"active": false}),
        "no drill on the live login page"
    );
    assert_eq!(get_json(&app, "/public/status.json").await["status"], "ok");
    let asked = get_json(&app, "/public/banner.json?ovning=1").await;
    assert_eq!(asked["active"], true);
    assert_eq!(asked["drill"], true);
    assert!(asked["text"].as_str().unwrap().starts_with("ÖVNING: "));
    let (_, html) = get_text(&app, "/public/banner.html?ovning=1").await;
    assert!(html.contains("role=\"status\""), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn the_accessibility_statement_follows_diggs_structure_and_every_public_page_links_to_it() {
    let app = spawn_app_with_tables(PUBLIC_TABLES).await;
    let (headers, html) = get_text(&app, "/public/tillganglighet").await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(html.contains("<html lang=\"sv\">"));
    let mut at = 0;
    for heading in [
        "<h1>Tillgänglighet för driftinformation om SAMSA</h1>",
        "<h2>Hur tillgängliga är sidorna?</h2>",
        "<h2>Vad kan du göra om du inte kan använda sidorna?</h2>",
        "<h2>Rapportera brister i sidornas tillgänglighet</h2>",
        "<h2>Tillsyn</h2>",
        "<h2>Teknisk information om sidornas tillgänglighet</h2>",
        "<h3>Innehåll som inte är tillgängligt</h3>",
        "<h2>Hur vi testat sidorna</h2>",
    ] {
        let found = html[at..]
            .find(heading)
            .unwrap_or_else(|| panic!("{heading} missing or out of order:\n{html}"));
        at += found;
    }
    assert!(
        html.contains(
            "delvis förenliga med lagen om tillgänglighet till digital offentlig service"
        )
    );
    assert!(html.contains("Myndigheten för digital förvaltning (Digg)"));
    assert!(html.contains("href=\"https://www.digg.se/tdosanmalan\""));
    let contact = &app.state.config.notices.info_address;
    assert!(
        html.contains(&format!("<a href=\"mailto:{contact}\">{contact}</a>")),
        "{html}"
    );

    // Linked from the public pages.
    post_firing(&app, vec![uddevalla("firing")]).await;
    publish_pending(&app, 1, NoticeKind::Initial, &["banner", "news"]).await;
    for path in [
        "/public/feedback/1",
        "/public/feedback/1/tack",
        "/public/tillganglighet",
    ] {
        let (_, html) = get_text(&app, path).await;
        assert!(
            html.contains("<a href=\"/public/tillganglighet\">Tillgänglighetsredogörelse</a>"),
            "{path}: {html}"
        );
    }
    app.stop().await;
}
