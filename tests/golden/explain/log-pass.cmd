http://www.shop.example/collect
--type
beacon
--method
POST
