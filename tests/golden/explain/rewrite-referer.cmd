http://news.example/story?fbclid=abc
--referer
https://news.example/section/x
--type
document
