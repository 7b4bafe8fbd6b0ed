"""Browser journey in headless Chromium: a visitor chats through the widget, an agent answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp import web

from tests.contract.test_web_app import PASSWORD, add_users, start_web

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


async def test_given_widget_and_agent_when_visitor_writes_then_agent_answers_and_visitor_sees_it(
    tmp_path: Path,
) -> None:
    app, database = await start_web(tmp_path, run_webhooks=False)
    await add_users(database)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            agent = await (await browser.new_context()).new_page()
            await agent.goto(f"{base}/agent")  # redirected to the sign-in form
            await agent.fill("input[name=username]", "agent1")
            await agent.fill("input[name=password]", PASSWORD)
            await agent.click("button[type=submit]")
            await agent.wait_for_selector("text=ready for chats")

            visitor = await (await browser.new_context()).new_page()
            await visitor.goto(f"{base}/static/chat-demo.html")
            await visitor.wait_for_selector("#cc-chat-status:has-text('online')")
            await visitor.fill("#cc-chat-input", "<b>Hi</b> my order is late")
            await visitor.click("#cc-chat-send")

            await agent.wait_for_selector(".chat .body:has-text('my order is late')")
            assert await agent.locator(".chat b:has-text('Hi')").count() == 0  # shown as text
            await agent.fill(".chat input.reply", "Sorry, checking now")
            await agent.click(".chat button[type=submit]")

            answer = visitor.locator(".cc-agent .cc-body", has_text="Sorry, checking now")
            await answer.wait_for()
            first = await visitor.locator(".cc-visitor .cc-body").first.text_content()
            assert first == "<b>Hi</b> my order is late"
            await browser.close()
    finally:
        await runner.cleanup()
        await database.close()
