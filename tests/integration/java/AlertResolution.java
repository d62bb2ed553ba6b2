// Reads an Avro body written with one schema through another, as a Java consumer of the alerts would.
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Paths;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;

public class AlertResolution {
  public static void main(String[] args) throws Exception {
    Schema writer = new Schema.Parser().parse(new File(args[0]));
    Schema reader = new Schema.Parser().parse(new File(args[1]));
    byte[] body = Files.readAllBytes(Paths.get(args[2]));
    try {
      GenericRecord read = new GenericDatumReader<GenericRecord>(writer, reader)
          .read(null, DecoderFactory.get().binaryDecoder(body, null));
      System.out.println("read " + read.get("upn") + " " + read.get("rule"));
    } catch (Exception error) {
      System.out.println("refused " + error.getClass().getSimpleName());
    }
  }
}
