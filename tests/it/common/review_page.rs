//! The review page as an operator's browser uses it: signed links on the test app's own
//! address, and the page's form filled in and submitted as the page shows it.

use super::TestApp;

#[cfg(feature = "system-tests")]
/// `link`, which starts with the configured public URL, on the test app's own address.
pub fn on_test_address(app: &TestApp, link: &str) -> String {
    let url = url::Url::parse(link).unwrap_or_else(|error| panic!("{link:?}: {error}"));
    format!("{}{}", app.address, url.path())
}

#[cfg(feature = "system-tests")]
/// The signed review link the relay would mail to `operator_email` for a draft, on the test
/// app's own address.
pub fn review_link(app: &TestApp, operator_email: &str, draft_id: i64, version: i64) -> String {
    let operator = app
        .state
        .config
        .review
        .operator(operator_email)
        .unwrap_or_else(|| panic!("{operator_email} is not a configured operator"));
    let (link, _) = samsa_relay::operators::signed_link(
        &app.state.config,
        &app.state.signer,
        operator,
        samsa_relay::links::LinkPurpose::Review { draft_id, version },
        jiff::Timestamp::now(),
    );
    on_test_address(app, &link)
}

#[cfg(feature = "system-tests")]
/// What a browser submits from the review page's form: the hidden fields, the checked level
/// and channels, the chosen role and the text fields as the page shows them. The button
/// (`action`) is left to the caller.
pub fn review_form_fields(html: &str) -> Vec<(String, String)> {
    form_fields(html, "review")
}

/// What a browser submits from the confirmation page's form (hidden fields only); the
/// button (`action=publish`) is left to the caller.
pub fn confirm_form_fields(html: &str) -> Vec<(String, String)> {
    form_fields(html, "confirm")
}

/// The fields of the page's form of class `class`, as a browser submits them.
fn form_fields(html: &str, class: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("class=\"{class}\""))
        .unwrap_or_else(|| panic!("no {class} form in the page:\n{html}"));
    let form = &html[start..];
    let form = &form[..form.find("</form>").expect("the form ends")];
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let tag_end = rest.find('>').expect("a tag ends");
        let tag = &rest[..=tag_end];
        let after = &rest[tag_end + 1..];
        if tag.starts_with("<input") {
            let kind = html_attribute(tag, "type").unwrap_or_default();
            let checkable = kind == "radio" || kind == "checkbox";
            if let Some(name) = html_attribute(tag, "name")
                && (!checkable || tag.contains(" checked"))
            {
                fields.push((name, html_attribute(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<textarea") {
            let name = html_attribute(tag, "name").expect("a named textarea");
            let text = &after[..after.find("</textarea>").expect("the textarea ends")];
            fields.push((name, unescape_html(text)));
        } else if tag.starts_with("<select") {
            let name = html_attribute(tag, "name").expect("a named select");
            let options = &after[..after.find("</select>").expect("the select ends")];
            let chosen = options
                .split("<option")
                .skip(1)
                .find(|option| option.contains(" selected"))
                .or_else(|| options.split("<option").nth(1))
                .and_then(|option| html_attribute(&format!("<option{option}"), "value"))
                .unwrap_or_default();
            fields.push((name, chosen));
        }
        rest = after;
    }
    fields
}

/// The value of `name="…"` in one HTML tag, unescaped.
fn html_attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape_html(&tag[start..end]))
}

fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

#[cfg(feature = "system-tests")]
/// Opens a review page, presses "Granska och publicera" with the form as the page shows
/// it, plus `extra` fields (a decision-maker for levels 2 and 3), and on the confirmation
/// page "Publicera nu". Returns the last answer's status and page (the review page with
/// its errors when the choices were refused).
pub async fn publish_through_review_page(
    app: &TestApp,
    url: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let response = app
        .client
        .get(url)
        .send()
        .await
        .expect("GET the review page");
    let status = response.status().as_u16();
    let html = response.text().await.expect("the review page");
    assert_eq!(status, 200, "the review page opens:\n{html}");
    let mut fields = review_form_fields(&html);
    for (name, value) in extra {
        fields.retain(|(field, _)| field != name);
        fields.push(((*name).to_owned(), (*value).to_owned()));
    }
    fields.push(("action".to_owned(), "confirm".to_owned()));
    let (status, html) = post_fields(app, url, &fields).await;
    if status != 200 || !html.contains("class=\"confirm\"") {
        return (status, html);
    }
    let mut fields = confirm_form_fields(&html);
    fields.push(("action".to_owned(), "publish".to_owned()));
    post_fields(app, url, &fields).await
}

/// Posts a form; returns the answer's status and page.
pub async fn post_fields(app: &TestApp, url: &str, fields: &[(String, String)]) -> (u16, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST the form");
    let status = response.status().as_u16();
    (status, response.text().await.expect("the answer page"))
}
