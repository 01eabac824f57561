// A plain Java Kafka producer for the integration tests: a client that is not ours.
// Reads "key<TAB>value" lines from stdin and sends each to TOPIC with the given
// compression type and an optional header NAME=VALUE; run as a single-file source with
// the Kafka jars the local stack fetched:
//   java -cp '.stack/kafka/libs/*' LineProducer.java BROKER TOPIC CODEC [NAME=VALUE]
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class LineProducer {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("compression.type", args[2]);
        props.put("acks", "all");
        props.put("linger.ms", "20");
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        int sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props);
             BufferedReader in = new BufferedReader(
                     new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) continue;
                String[] kv = line.split("\t", 2);
                ProducerRecord<String, String> rec = new ProducerRecord<>(args[1], kv[0], kv[1]);
                if (args.length > 3) {
                    String[] h = args[3].split("=", 2);
                    rec.headers().add(h[0], h[1].getBytes(StandardCharsets.UTF_8));
                }
                producer.send(rec);
                sent++;
            }
            producer.flush();
        }
        System.out.println("sent " + sent);
    }
}
