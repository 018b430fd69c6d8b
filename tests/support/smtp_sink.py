#!/usr/bin/python3
"""A real SMTP server for the email tests (aiosmtpd, Debian package python3-aiosmtpd).

Usage: smtp_sink.py --port PORT --folder FOLDER [--control FILE] [--max-seconds N]
                    [--certificate PEM --key PEM [--require-starttls | --implicit-tls]]

Listens on 127.0.0.1:PORT and prints "READY 127.0.0.1:PORT" once it accepts connections.
Every accepted message is written to FOLDER as NNNNNN.eml (the bytes received) and
NNNNNN.json (envelope, peer, times, TLS, and the message parsed by Python's own email
package, so that the tests check what a real mail reader sees). The .json file appears
last, in one rename, so a reader never sees half a record. Every refused recipient is
appended to FOLDER/rejections.jsonl.

TLS, with the server certificate (and its chain) in --certificate and its key in --key:

  * without another option the server offers STARTTLS and also takes mail without it;
  * --require-starttls refuses every command but EHLO, HELO, NOOP, QUIT and STARTTLS
    until the session has switched to TLS (530);
  * --implicit-tls speaks TLS from the first byte (smtps), and offers no STARTTLS.

Each message's record says how its session was protected: "tls" is null for plain text,
else {"mode": "starttls" or "implicit", "version": "TLSv1.3", "cipher": "..."}. A
STARTTLS handshake the client breaks off (it does not trust the certificate, say) is
appended to FOLDER/tls_failures.jsonl with the time and the server's view of the error.

The control file (JSON) is read again on every RCPT and DATA, so a test changes the
server's behaviour while it runs:

    {
      "rules": [
        {"pattern": "^slow@", "reply": "451 4.7.1 Try again later", "times": 2},
        {"pattern": "^nobody@", "reply": "550 5.1.1 No such user here"}
      ],
      "stall_data": false
    }

A rule answers RCPT for recipients matching `pattern` (a regular expression) with
`reply`, for the first `times` attempts of each recipient (always without `times`).
While `stall_data` is true the server answers nothing after the message data; when it
turns false the message is accepted and recorded with "stalled": true, even if the client
has closed the connection meanwhile.

The server exits when its standard input closes (the test process is gone) or after
--max-seconds, so that it never outlives a test run.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import re
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, TLSSetupException

STALL_POLL_SECONDS = 0.05
# A stall never lasts longer than this, whatever the control file says.
MAX_STALL_SECONDS = 120.0


class Sink:
    def __init__(self, folder, control_path):
        self.folder = folder
        self.control_path = control_path
        self.sequence = 0
        # (rule index, recipient) -> how many times the rule has answered it.
        self.rule_hits = {}
        # DATA handlings in progress, kept until done (see handle_DATA).
        self.handling = set()

    def control(self):
        if not self.control_path:
            return {}
        try:
            with open(self.control_path, encoding="utf-8") as control_file:
                return json.load(control_file)
        except FileNotFoundError:
            return {}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mail_received_at = time.time()
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for index, rule in enumerate(self.control().get("rules", [])):
            if not re.search(rule["pattern"], address):
                continue
            key = (index, address)
            hits = self.rule_hits.get(key, 0)
            times = rule.get("times")
            if times is not None and hits >= times:
                continue
            self.rule_hits[key] = hits + 1
            self.append_rejection(
                {
                    "at": time.time(),
                    "rcpt": address,
                    "reply": rule["reply"],
                    "peer": peer_text(session),
                }
            )
            return rule["reply"]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # A real server that has the whole message delivers it even when the client hangs
        # up before the answer (Postfix has queued it by then). aiosmtpd cancels the
        # handler when the connection closes, so the handling is shielded and kept.
        handling = asyncio.ensure_future(self.accept_data(server, session, envelope))
        self.handling.add(handling)
        handling.add_done_callback(self.handling.discard)
        return await asyncio.shield(handling)

    async def accept_data(self, server, session, envelope):
        data_received_at = time.time()
        stalled = False
        stall_deadline = time.monotonic() + MAX_STALL_SECONDS
        while self.control().get("stall_data") and time.monotonic() < stall_deadline:
            stalled = True
            await asyncio.sleep(STALL_POLL_SECONDS)
        self.record(session, envelope, data_received_at, stalled, tls_of(server, session))
        return "250 2.0.0 Message accepted"

    async def handle_exception(self, error):
        """A failed STARTTLS handshake is recorded (aiosmtpd closes the connection and
        sends no answer); any other error is logged and answered as aiosmtpd does without
        this hook, except that the log line lacks the peer, which the hook is not given."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            self.append_line(
                "tls_failures.jsonl",
                {
                    "at": time.time(),
                    "error": f"{type(cause).__name__}: {cause}" if cause else repr(error),
                },
            )
            return "421 4.7.0 TLS handshake failed"
        logging.getLogger("mail.log").exception("SMTP session exception")
        return "500 Error: ({}) {}".format(error.__class__.__name__, str(error))

    def append_rejection(self, rejection):
        self.append_line("rejections.jsonl", rejection)

    def append_line(self, name, record):
        with open(os.path.join(self.folder, name), "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def record(self, session, envelope, data_received_at, stalled, tls):
        self.sequence += 1
        name = f"{self.sequence:06d}"
        raw = envelope.original_content or envelope.content
        with open(os.path.join(self.folder, name + ".eml"), "wb") as eml:
            eml.write(raw)
        record = {
            "sequence": self.sequence,
            "received_at": data_received_at,
            "mail_received_at": getattr(envelope, "mail_received_at", None),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": peer_text(session),
            "stalled": stalled,
            "tls": tls,
            "eml": name + ".eml",
        }
        record.update(parse_message(raw))
        temporary = os.path.join(self.folder, name + ".json.tmp")
        with open(temporary, "w", encoding="utf-8") as json_file:
            json.dump(record, json_file, ensure_ascii=False, indent=1)
        os.rename(temporary, os.path.join(self.folder, name + ".json"))


def tls_of(server, session):
    """How the session that carries a message is protected; None for plain text."""
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {
        # aiosmtpd sets session.ssl only when a session switches with STARTTLS.
        "mode": "starttls" if session.ssl is not None else "implicit",
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
    }


def peer_text(session):
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def parse_message(raw):
    """What a mail reader sees: decoded headers and the text of every leaf part."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {}
    for name in message.keys():
        values = [str(value) for value in message.get_all(name, [])]
        headers.setdefault(name.lower(), []).extend(values)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        parts.append(
            {
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "text": part.get_content() if part.get_content_maintype() == "text" else None,
            }
        )
    return {
        "content_type": message.get_content_type(),
        "headers": headers,
        "parts": parts,
        "defects": [type(defect).__name__ for defect in message.defects],
    }


async def exit_when_stdin_closes():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--control")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--certificate", help="PEM: the server certificate (and chain)")
    parser.add_argument("--key", help="PEM: the certificate's private key")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--require-starttls", action="store_true")
    modes.add_argument("--implicit-tls", action="store_true")
    arguments = parser.parse_args()
    if bool(arguments.certificate) != bool(arguments.key):
        parser.error("--certificate and --key go together")
    if (arguments.require_starttls or arguments.implicit_tls) and not arguments.certificate:
        parser.error("--require-starttls and --implicit-tls need --certificate and --key")
    tls_context = None
    if arguments.certificate:
        # A server context: no client certificate asked for, no host name checked.
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(arguments.certificate, arguments.key)
    os.makedirs(arguments.folder, exist_ok=True)
    sink = Sink(arguments.folder, arguments.control)
    loop = asyncio.get_running_loop()
    starttls_context = None if arguments.implicit_tls else tls_context
    server = await loop.create_server(
        lambda: SMTP(
            sink,
            hostname="sink.test",
            ident="samsa-relay test sink",
            decode_data=False,
            enable_SMTPUTF8=True,
            tls_context=starttls_context,
            require_starttls=arguments.require_starttls,
        ),
        host="127.0.0.1",
        port=arguments.port,
        ssl=tls_context if arguments.implicit_tls else None,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY 127.0.0.1:{port}", flush=True)
    stdin_closed = asyncio.ensure_future(exit_when_stdin_closes())
    try:
        await asyncio.wait_for(stdin_closed, timeout=arguments.max_seconds)
    except asyncio.TimeoutError:
        print("smtp_sink: --max-seconds reached; exiting", file=sys.stderr, flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
