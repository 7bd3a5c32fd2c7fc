#!/usr/bin/env python3
"""https_server's seeded site for the browser scenarios: every page a browser is sent to
exists, links the next one and names subresources the server serves, and a page is the same
on every run (the golden browser captures and the quality corpus rest on that)."""
import http.client
import http.server
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import https_server  # noqa: E402


class SitePageTest(unittest.TestCase):
    def test_page_is_a_function_of_its_number(self):
        self.assertEqual(https_server.site_page(700), https_server.site_page(700))
        self.assertNotEqual(https_server.site_page(700), https_server.site_page(701))

    def test_page_links_the_next_after_a_pause_and_names_distinct_subresources(self):
        for n in range(100, 140):
            page = https_server.site_page(n).decode()
            nxt = re.search(r'location.href="/page/(\d+)"},(\d+)\)', page)
            self.assertIsNotNone(nxt, page)
            self.assertEqual(int(nxt.group(1)), n + 1)
            self.assertTrue(800 <= int(nxt.group(2)) < 3300)
            images = re.findall(r'<img src="/bytes/(\d+)"', page)
            self.assertTrue(3 <= len(images) <= 6)
            # a repeated URL would be fetched once: fewer requests than the page names
            self.assertEqual(len(set(images)), len(images))


class QuietHandler(https_server.Handler):
    def log_message(self, fmt, *args):
        pass


class ServedSiteTest(unittest.TestCase):
    def setUp(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.httpd.server_address[1], timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, resp.getheader("Content-Type"), body

    def test_every_resource_of_a_page_is_served_at_its_size(self):
        status, ctype, body = self.get("/page/300")
        self.assertEqual((status, ctype), (200, "text/html"))
        self.assertEqual(body, https_server.site_page(300))
        for size in re.findall(r'"/bytes/(\d+)"', body.decode()):
            status, _, data = self.get("/bytes/" + size)
            self.assertEqual(status, 200)
            self.assertEqual(len(data), int(size))

    def test_a_page_that_is_not_a_number_is_refused(self):
        self.assertEqual(self.get("/page/x")[0], 400)


if __name__ == "__main__":
    unittest.main()
